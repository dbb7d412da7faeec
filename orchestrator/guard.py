"""A campaign's guard spec (erasecore/serving.py) from its journal: what serving needs, read once. Pure.

    spec = guard_spec(manifest, campaign_spec, listing)   # listing: adapters.json's "adapters"

Only committed records are read. Each concept's judge identity is its committed attempt's GateReport's, so
the output audit judges with the instrument, and at the thresholds, its gate used. A journal whose reports
name no judge (written before gates recorded one) leaves it None: serving then uses the campaign's judge at
its own defaults and says so in every audit record.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from erasecore import judges
from erasecore.concepts import step_members
from erasecore.contracts import JudgeIdentity
from erasecore.errors import ConfigError, ManifestError
from erasecore.serving import GuardedConcept, GuardSpec
from orchestrator.manifest import Manifest
from orchestrator.spec import CampaignSpec


class NothingToGuardError(ManifestError):
    """The campaign has no committed concept: there is nothing to serve guarded."""


def committed(manifest: Manifest) -> tuple:
    """The commit records in step order; NothingToGuardError when there are none."""
    commits = tuple(sorted(manifest.history.commits, key=lambda c: c.step))
    if not commits:
        raise NothingToGuardError(f"campaign {manifest.campaign!r} at {manifest.root} has no committed concept: "
                                  "nothing to guard")
    return commits


def gate_judge(manifest: Manifest, step: int, attempt: int, judge: str) -> JudgeIdentity | None:
    """The identity of the judge `judge` in the committed attempt's gate report (None: the report names none)."""
    record = next((a for a in manifest.history.attempts_for(step) if a.attempt == attempt), None)
    report = record.report if record is not None else None
    if report is None or not report.judges:
        return None
    return next((j for j in report.judges if j.name == judge), report.judges[0])


def settled_judge(spec: CampaignSpec) -> tuple[str, str]:
    """(the campaign's judge, the concept set its prompts come from), "auto" settled as preflight settles it."""
    own = judges.for_model(spec.model)
    name = own.name if own is not None and spec.validation.judge == judges.AUTO else spec.validation.judge
    entry = judges.find(name)
    concepts_from = spec.concepts_from or getattr(entry, "concept_set", "")
    if name == judges.AUTO:
        name = judges.judge_for(spec.model, name, "") or ""
    if not name or not concepts_from:
        raise ConfigError(f"campaign {spec.name!r}: no judge or concept set to guard with (validation.judge="
                          f"{spec.validation.judge!r}, concepts_from={spec.concepts_from!r})")
    return name, concepts_from


def guard_spec(manifest: Manifest, spec: CampaignSpec, listing: Sequence[dict[str, Any]]) -> GuardSpec:
    """The guard spec of the committed concepts; `listing` is the per-concept export's adapters, which must
    carry exactly the committed deltas (ConfigError naming the first that does not)."""
    commits = committed(manifest)
    judge, concepts_from = settled_judge(spec)
    by_step = {int(a["step"]): a for a in listing}
    concepts = []
    for c in commits:
        adapter = by_step.get(c.step)
        if adapter is None or adapter.get("delta_sha256") != c.delta.sha256:
            raise ConfigError(f"the adapters do not carry step {c.step} ({c.concept}) as committed (delta "
                              f"{c.delta.sha256[:12]}): export them again (erase export --format lora --per-concept)")
        identity = gate_judge(manifest, c.step, c.attempt, judge)
        concepts += [GuardedConcept(c.step, m, str(adapter["adapter"]), identity)   # a group step: one adapter
                     for m in step_members(c.concept)]
    extra = sorted(set(by_step) - {c.step for c in commits})
    if extra:
        raise ConfigError(f"the adapters carry step {extra[0]}, which the campaign has not committed")
    v = spec.validation
    return GuardSpec(manifest.campaign, spec.model, concepts_from, judge, v.judge_model, tuple(concepts),
                     v.inference_steps, v.guidance_scale, spec.resources.frozen_precision)
