"""The judge and suite registry: a judge's provider is what it brings to a gate.

    provider = providers.get("clip")                     # through the judge catalog's `provider` entry
    judge, suite = provider.gate(request, "clip")        # the step's judge and suite
    provider.capability_bench(), provider.attention_prompt(concept)   # the gate's views (None: none of its own)
    provider.concept_prompts(concept, preserve)          # an erase step's prompts on the provider's world

A judge is found in the judge catalog (erasecore/judges.py, filled from the entry-point group
`concept_erase.judges`); its entry names the provider as "module:attribute", imported here when a worker
needs it. The base Provider serves a concept set (configs/concepts/*.yaml): its suite is built by
jobs/validation/concept_suite.py and its judge by the factory it holds (NudeNet, CLIP, VQA). A provider
with a world of its own (the toy world: jobs/toyworld/provider.py) builds its own suites and views.
This package names no provider: it knows concept sets and judges.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable

from erasecore import judges
from erasecore.concepts import load_concept_set
from erasecore.errors import ConfigError


class Provider:
    """A concept-set judge: `judge_factory(concept_set, model, device, precision)` builds it."""

    def __init__(self, judge_factory: Callable | None = None):
        self.judge_factory = judge_factory

    def judge(self, concept_set, model: str = "", device: str = "cpu", precision: str = "fp32"):
        """The judge for a concept-set suite; its own dependencies load only now."""
        return self.judge_factory(concept_set, model, device, precision)

    def gate(self, request, name: str):
        """(judge, suite) for a step request: the concept-set suite of its concept and earlier erasures."""
        from jobs.training.distributed import device
        from jobs.validation.concept_suite import build_concept_suite

        v = request.validation
        concept_set = load_concept_set(request.concepts_from or name)
        judged_by = self.judge(concept_set, v.judge_model, str(device()), request.frozen_precision)
        suite = build_concept_suite(concept_set, request.concept, request.erased_before, v.max_prompts_per_group,
                                    allow_thin=request.allow_thin, judge=judged_by)
        return judged_by, suite

    def capability_bench(self):
        """A capability bench (jobs/validation/capability.py Bench) measured on every gate, or None."""
        return None

    def attention_prompt(self, concept: str) -> tuple[str, str, str] | None:
        """(prompt, concept word, attribute word) of the gate's attention maps; None: the generic scene."""
        return None

    def concept_prompts(self, name: str, preserve: tuple[str, ...]):
        """An erase step's prompts for a model that draws this provider's world (ConceptPrompts)."""
        raise ConfigError(f"the judge's provider {type(self).__name__} has no world of its own to draw prompts from")


def get(name: str) -> Provider:
    """The provider of judge `name`; one ConfigError line when this build has no such judge."""
    entry = judges.get(name)
    module, _, attribute = entry.provider.partition(":")
    provider = getattr(importlib.import_module(module), attribute, None)   # its own imports' errors are its own
    if not isinstance(provider, Provider):
        raise ConfigError(f"judge {name!r}: {entry.provider} is not a Provider (jobs/validation/providers.py)")
    return provider
