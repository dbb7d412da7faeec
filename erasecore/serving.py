"""What a guarded pipeline serves: the serving bundle's guard.json, read by `erase guard`, the Python API and
the ComfyUI nodes. Pure.

A campaign's per-concept adapters (`erase export --format lora --per-concept`) plus guard.json beside their
adapters.json make a directory that serving needs nothing else from: which concepts were committed (step order,
adapter names), the base model, the concept set the pre-filter is built from, and, per concept, exactly which
judge measured its gate and at which thresholds (the GateReport's JudgeIdentity), so the output audit decides
as the gate did. Serving never reads the campaign's journal: `erase guard` writes guard.json from it
(orchestrator/guard.py), then everything downstream reads only this file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from erasecore.atomic import atomic_write_text
from erasecore.codec import from_json, to_json
from erasecore.contracts import JudgeIdentity
from erasecore.errors import ConfigError

GUARD_FILE = "guard.json"
POLICIES = ("touched", "all")       # the controller: adapters of the concepts a prompt touches, or every one
ON_DETECT = ("block", "flag")       # a detection (by the pre-filter or the audit) withholds the image, or marks it


@dataclass(frozen=True)
class GuardedConcept:
    """One committed concept as serving sees it."""

    step: int
    concept: str
    adapter: str                         # its adapter's name in adapters.json
    judge: JudgeIdentity | None = None   # who judged its gate; None: a journal whose reports name no judge


@dataclass(frozen=True)
class GuardSpec:
    campaign: str
    model: str                           # the base model the adapters apply to
    concepts_from: str                   # the concept set the pre-filter is built from
    judge: str                           # the campaign's judge (settled: never "auto")
    judge_model: str                     # its weights, for judges that need them (validation.judge_model)
    concepts: tuple[GuardedConcept, ...]
    inference_steps: int = 20            # the campaign's gate settings: how the audit's images were drawn there
    guidance_scale: float = 5.0
    frozen_precision: str = "fp32"

    @property
    def erased(self) -> tuple[str, ...]:
        return tuple(c.concept for c in self.concepts)

    def thresholds(self) -> dict[str, float]:
        """The gate's thresholds, merged over the committed concepts' judges (they are one judge)."""
        out: dict[str, float] = {}
        for c in self.concepts:
            if c.judge is not None:
                out.update(c.judge.thresholds)
        return out

    def gate_judge(self) -> JudgeIdentity | None:
        """The judge identity the gates recorded (the last committed step's), None when none recorded one."""
        return next((c.judge for c in reversed(self.concepts) if c.judge is not None), None)


def write_guard_spec(directory: str | Path, spec: GuardSpec) -> Path:
    path = Path(directory) / GUARD_FILE
    atomic_write_text(path, to_json(spec) + "\n")
    return path


def read_guard_spec(directory: str | Path) -> GuardSpec:
    """The bundle's guard.json; one ConfigError line when it is missing or not one."""
    path = Path(directory) / GUARD_FILE
    if not path.is_file():
        raise ConfigError(f"{directory} is not a serving bundle: no {GUARD_FILE} (run `erase guard CAMPAIGN_DIR "
                          f"--prepare-only` to write one beside the per-concept adapters)")
    try:
        return from_json(GuardSpec, path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"{path} is not a guard spec: {type(e).__name__}: {e}") from None
