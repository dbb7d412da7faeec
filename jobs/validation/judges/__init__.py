"""Judges: who answers a suite's questions about generated images. One interface (observe, why_not,
posterior_split, cache_id); each judge's facts are in the judge catalog (erasecore/judges.py) and
its worker code behind its provider (jobs/validation/providers.py): the toy world's evaluator is one
judge among them."""
from __future__ import annotations

from erasecore.concepts import ConceptSet


def load_judge(name: str, concept_set: ConceptSet, model: str = "", device: str = "cpu", precision: str = "fp32"):
    """The judge `name` for a concept-set suite (a judge with a world of its own is built from that world).

    Each judge's own dependencies (onnxruntime, a CLIP checkpoint) load only when a gate uses it; a judge
    this build does not have is one ConfigError line.
    """
    from jobs.validation import providers

    return providers.get(name).judge(concept_set, model, device, precision)
