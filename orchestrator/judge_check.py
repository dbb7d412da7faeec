"""The judge self-check's requests: one per concept, as the concept's first gate measures the base model. Pure.

    check = in_process.judge_check(settled)   # `erase judge-check`: the images drawn and judged here, no Ray
    erasecore.judge_check.require(check)      # one JudgeCheckError line when a concept is refused

Each request is a step request with no parents and nothing erased before (the base model, the concept's own
suite: for the first concept, the suite its gate measures, so that gate finds its baseline drawn), its cache
the campaign's baseline cache (what the check saw is cached there: a run checking again
draws nothing), its validation the one every gate of the campaign gets (judge, seeds, confidence).
"""
from __future__ import annotations

import os
from pathlib import Path

from erasecore.concepts import step_members
from erasecore.contracts import StepRequest
from orchestrator.manifest import slug
from orchestrator.preflight import Settled, with_settled_validation

CHECK_DIR = "judge-check"


def requests(settled: Settled) -> tuple[StepRequest, ...]:
    """A base-model request per concept of the settled campaign, in queue order (each member of a group step:
    the judge must see each one)."""
    spec = settled.spec
    root = Path(os.path.abspath(spec.storage_path))
    validation = with_settled_validation(settled)
    concepts_from = settled.concept_set.source if settled.concept_set else ""
    first: dict[str, int] = {}   # concept -> the first step that erases it (`steps: auto` queues it twice)
    for k, step in enumerate(spec.concepts, 1):
        for concept in step_members(step):
            first.setdefault(concept, k)
    return tuple(
        StepRequest(campaign=spec.name, step=k, attempt=0, concept=concept, method=spec.method, hparams={},
                    model=spec.model, parents=(), out_dir=str(root / CHECK_DIR / f"{k}-{slug(concept)}"),
                    preserve=tuple(spec.preserve),
                    validation=validation, cache_dir=str(root / "cache"), seed=spec.seed, concepts_from=concepts_from,
                    allow_thin=spec.allow_thin, frozen_precision=spec.resources.frozen_precision)
        for concept, k in first.items())
