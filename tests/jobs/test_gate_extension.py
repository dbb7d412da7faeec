"""The gate's extension on the real toy model: a borderline open check gets more images of its own groups."""
from __future__ import annotations

import dataclasses

from jobs.deltas import delta as deltas
from jobs.models.loader import load_pipeline
from jobs.step import run_erase
from jobs.validation.validator import for_request
from erasecore.contracts import StepRequest, ValidationSpec

QUIET = {"log": lambda *a: None}


def _gate(tmp_path, spec: ValidationSpec):
    """UCE at a quarter of its strength on `square` (forgetting near the 0.9 threshold), one small suite."""
    req = StepRequest("ext", 1, 1, "square", "uce", {"erase_scale": 0.25}, "toyworld", (), str(tmp_path / "step"),
                      validation=spec, cache_dir=str(tmp_path / "cache"))
    validator, suite = for_request(req, "toyworld", **QUIET)
    pipe = load_pipeline("toyworld")
    base = validator.baseline(pipe, "toyworld", suite)
    deltas.stack(pipe, (run_erase(req, **QUIET),))
    return suite, base, validator.validate(pipe, suite, base)


def test_an_open_forgetting_check_is_extended_with_target_images_only(tmp_path):
    # margin 0.5: forgetting on a dozen target images is open, so it is extended whatever its value
    spec = ValidationSpec(seeds=1, max_prompts_per_group=4, judge="toyworld", extend_seeds=2, extend_margin=0.5)
    suite, base, extended = _gate(tmp_path, spec)
    _, _, plain = _gate(tmp_path, dataclasses.replace(spec, extend_seeds=0))
    assert {k[1] for k in base} == {0}                       # the base model is drawn for the budget's seed only
    assert "forgetting" in extended.extended and plain.extended == ()
    assert extended.forgetting.n > plain.forgetting.n      # more target images ...
    assert extended.retain.n == plain.retain.n and extended.drift.n == plain.drift.n   # ... and no more retain ones
    assert extended.images_generated > plain.images_generated == len(suite.items)
    assert extended.forgetting.n <= 3 * plain.forgetting.n  # at most extend_seeds more seeds of each target prompt


def test_a_gate_whose_budget_decides_is_not_extended(tmp_path):
    # margin 0: nothing open lies exactly on its threshold, so the budget's report stands
    spec = ValidationSpec(seeds=1, max_prompts_per_group=4, judge="toyworld", extend_seeds=2, extend_margin=0.0)
    suite, _, report = _gate(tmp_path, spec)
    assert report.extended == () and report.images_generated <= len(suite.items)
