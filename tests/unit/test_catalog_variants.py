"""Named variants in the catalog: "tuned" (the project's defaults) and "published" (the official code's)."""
from __future__ import annotations

import pytest

from erasecore import catalog
from erasecore.errors import MethodConfigError
from orchestrator.gate import GateDecision
from orchestrator.policy import NextAttempt, PastAttempt, next_attempt
from orchestrator.spec import load_spec

WEAK = GateDecision("reject", ("forgetting 0.62 < 0.90",), ("forgetting",))


def test_every_variant_sets_only_hyperparameters_its_method_has_and_valid_values():
    for entry in catalog.METHODS:
        for name, overrides in entry.variants.items():
            assert name != catalog.TUNED, f"{entry.name}: tuned is the params' defaults, not an override"
            entry.check(overrides)   # unknown names and bad values raise
            assert name in next(p for p in entry.params if p.name == "variant").choices


def test_published_variants_are_the_official_defaults():
    esd = {"anchor": "empty", "eta": 2.0, "preserve_weight": 0.0, "steps": 200, "lr": 5e-5, "batch": 1}
    for name in ("esd-x", "esd-u"):
        assert catalog.get(name).resolve({"variant": "published"}).items() >= esd.items()
    uce = catalog.get("uce").resolve({"variant": "published"})
    assert uce["rows"] == "last_token" and uce["preserve_scale"] == 0.0 and uce["lam"] == 0.5


def test_tuned_is_the_default_and_what_a_user_sets_wins_over_the_variant():
    entry = catalog.get("esd-x")
    assert entry.resolve({}) == entry.resolve({"variant": "tuned"}) == {**entry.defaults(), "variant": "tuned"}
    assert entry.resolve({})["anchor"] == "without_concept"
    assert entry.resolve({"variant": "published", "eta": 3.0})["eta"] == 3.0


def test_an_unknown_variant_is_one_line_naming_the_choices():
    with pytest.raises(MethodConfigError, match=r"hparams.uce.variant must be one of tuned, published, got 'official'"):
        catalog.get("uce").resolve({"variant": "official"})


def test_a_retry_of_a_published_run_steps_from_the_published_strength():
    s = load_spec(None, ["name=t", "concepts=[star]", "method=esd-x", "hparams.esd-x.variant=published"])
    nxt = next_attempt(s, "star", [PastAttempt("esd-x", {"variant": "published"}, WEAK)])
    assert nxt == NextAttempt("esd-x", {"variant": "published", "eta": 4.0})   # published eta is 2, not 1
