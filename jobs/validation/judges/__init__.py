"""Judges: who answers a suite's questions about generated images. One interface (observe, why_not,
posterior_split, cache_id); the toy world's evaluator is one judge among them."""
from __future__ import annotations

from orchestrator.core.concepts import ConceptSet
from orchestrator.core.errors import ConfigError

IMPLEMENTED = ("toyworld", "nudenet")


def load_judge(name: str, concept_set: ConceptSet):
    """The judge `name` for a concept-set suite (the toy world's judge is built from its own world)."""
    if name == "nudenet":
        from jobs.validation.judges.nudenet import NudeNetJudge   # onnxruntime only when this judge is used

        return NudeNetJudge(concept_set)
    raise ConfigError(f"validation.judge {name!r} is not in this build (judges: {', '.join(IMPLEMENTED)})")
