"""Judges: who answers a suite's questions about generated images. One interface (observe, why_not,
posterior_split, cache_id); the toy world's evaluator is one judge among them."""
from __future__ import annotations

from orchestrator.core.concepts import ConceptSet
from orchestrator.core.errors import ConfigError

IMPLEMENTED = ("toyworld", "nudenet", "clip", "vqa")


def load_judge(name: str, concept_set: ConceptSet, model: str = "", device: str = "cpu", precision: str = "fp32"):
    """The judge `name` for a concept-set suite (the toy world's judge is built from its own world).

    Each judge's own dependencies (onnxruntime, a CLIP checkpoint) load only when a gate uses it.
    """
    if name == "nudenet":
        from jobs.validation.judges.nudenet import NudeNetJudge

        return NudeNetJudge(concept_set)
    if name == "clip":
        from jobs.validation.judges.clip import ClipJudge

        return ClipJudge(concept_set, model, device, precision)
    if name == "vqa":
        from jobs.validation.judges.vqa import VqaJudge

        return VqaJudge(concept_set, model, device, precision)
    raise ConfigError(f"validation.judge {name!r} is not in this build (judges: {', '.join(IMPLEMENTED)})")
