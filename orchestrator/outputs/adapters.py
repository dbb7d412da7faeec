"""One named diffusers LoRA adapter per committed concept, so a user can switch concepts' erasure on and off.

    export_adapters(plan, out)   # <out>/<adapter>/pytorch_lora_weights.safetensors per commit, <out>/adapters.json

    pipe.load_lora_weights(f"{out}/star", adapter_name="star")   # each adapter under its own name
    pipe.set_adapters(["star", "square"])                         # all on: the committed model
    pipe.set_adapters(["square"])                                 # star's step off, the others on

Each adapter is its step's own delta: a dense delta by truncated SVD at `rank` (default its full rank, exact),
a LoRA delta with its own factors (exact at any `rank`). All adapters on is therefore the committed model. One
switched off is NOT the campaign without that step: every later step was erased and gated on a model that had
it (docs/campaigns.md#per-concept-adapters). The directory appears whole or not at all (written beside it, then
renamed), so a failed export never leaves half the adapters.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from orchestrator.manifest import atomic_write_text
from orchestrator.outputs.export import ExportError, ExportPlan, full_rank

LISTING = "adapters.json"
NAMING = ("adapter names are the concept with every run of characters other than ASCII letters, digits and '_' "
          "replaced by '_' (peft keeps adapters in torch ModuleDicts and state-dict keys, where '.' or a space "
          "breaks them); a name that starts with a digit gets 'c_' before it, a clash gets '_step<k>' after it")
_NOT_NAME = re.compile(r"[^0-9A-Za-z_]+")


@dataclass(frozen=True)
class Adapter:
    """One committed step as a loadable adapter: `<out>/<path>`, loaded under `adapter`."""

    step: int
    concept: str
    adapter: str                 # the name to load and switch it by
    renamed: bool                # adapter != concept (see NAMING)
    attempt: int
    method: str
    kind: str                    # the delta's kind: dense (factorised) or lora (its own factors)
    rank: int
    max_rel_error: float         # ||D - B A||_F / ||D||_F, worst module; 0.0 when exact
    sha256: str                  # of the adapter file
    delta_sha256: str            # of the committed delta it carries
    path: str                    # relative to the export directory
    skipped: tuple[str, ...] = ()


def adapter_name(concept: str, step: int) -> str:
    """A name peft and diffusers accept as an adapter name: 'red star' -> 'red_star'."""
    name = _NOT_NAME.sub("_", concept).strip("_")
    if not name:
        return f"step{step}"
    return f"c_{name}" if name[0].isdigit() else name


def adapter_names(concepts: list[tuple[int, str]]) -> list[str]:
    """One distinct adapter name per (step, concept), in the order given."""
    names: list[str] = []
    for step, concept in concepts:
        name = adapter_name(concept, step)
        names.append(f"{name}_step{step}" if name in names else name)
    return names


def export_adapters(plan: ExportPlan, out: Path, rank: int | None = None, skip_non_2d: bool = False) -> Path:
    """Write one adapter directory per commit of `plan` and adapters.json under `out` (a new directory)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} already exists; choose a new --out directory")
    if rank is not None and rank < 1:
        raise ExportError(f"--rank must be >= 1, got {rank}")
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        adapters = _write_adapters(plan, partial, rank, skip_non_2d)
        _write_listing(plan, partial, adapters)
        if out.exists():
            out.rmdir()   # empty (checked above): rename does not replace a directory on every system
        os.replace(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out


def _write_adapters(plan: ExportPlan, root: Path, rank: int | None, skip_non_2d: bool) -> list[Adapter]:
    from jobs.deltas.delta import load_delta
    from jobs.deltas.lora_export import DIFFUSERS_WEIGHT_NAME, export_diffusers_lora

    names = adapter_names([(c.step, c.concept) for c in plan.commits])
    adapters = []
    for commit, ref, name in zip(plan.commits, plan.refs, names):
        loaded = load_delta(ref.path, ref.sha256)   # verifies the committed hash
        meta = loaded[1]
        # A LoRA delta keeps its own factors (exact); a dense one is factorised, at full rank unless told.
        step_rank = None if meta.kind == "lora" else (rank or full_rank([loaded]))
        result = export_diffusers_lora([loaded], root / name, rank=step_rank, skip_non_2d=skip_non_2d)
        fit = result.fit
        adapters.append(Adapter(commit.step, commit.concept, name, name != commit.concept, commit.attempt,
                                meta.method, meta.kind, fit.rank, fit.max_rel_error, result.sha256,
                                ref.sha256, f"{name}/{DIFFUSERS_WEIGHT_NAME}", tuple(fit.skipped)))
    return adapters


def _write_listing(plan: ExportPlan, root: Path, adapters: list[Adapter]) -> None:
    doc = {"campaign": plan.campaign, "format": "lora", "per_concept": True, "base_model": plan.model,
           "upto_step": plan.last_step, "naming": NAMING,
           "switching": "all adapters on = the committed model; one off leaves every later step, which was erased "
                        "and gated on a model that had it: not the campaign without that step",
           "adapters": [asdict(a) for a in adapters]}
    atomic_write_text(root / LISTING, json.dumps(doc, indent=1) + "\n")
