"""Variant concepts ("red star", "small blue circle", "outline square"): resolution, suite, method prompts."""
from __future__ import annotations

import pytest

from jobs.toyworld.world import load_world
from jobs.toyworld.concept_prompts import toy_concept_prompts
from jobs.toyworld.suite import build_suite
from erasecore.concepts import load_concept_set
from erasecore.errors import UnknownConceptError


def test_the_world_resolves_variants_with_its_own_attribute_values():
    world = load_world()
    c = world.concept("small blue circle")
    assert (c.kind, c.shape, c.fixed) == ("variant", "circle", (("colour", "blue"), ("size", "small")))
    assert world.concept("outline square").fixed == (("material", "outline"),)
    assert world.covers(c, "circle", {"colour": "blue", "size": "small"})
    assert not world.covers(c, "circle", {"colour": "red", "size": "small"})
    assert not world.covers(c, "circle", {"colour": "blue"})          # unknown size: not this leaf
    for bad in ("purple star", "red red star", "red blue star", "red round", "crimson star", "star red"):
        with pytest.raises(UnknownConceptError):
            world.concept(bad)


def test_the_concept_set_accepts_variants_for_preflight():
    entry = load_concept_set("toyworld").entry("small red star")
    assert (entry.kind, entry.superclass, entry.attributes) == ("variant", "star", {"size": ("small",),
                                                                                    "colour": ("red",)})
    with pytest.raises(UnknownConceptError):
        load_concept_set("toyworld").entry("red small")


def groups(suite):
    out = {}
    for i in suite.items:
        out.setdefault(i.group, []).append(i)
    return out


def test_a_variant_suite_asks_whether_its_siblings_survive():
    g = groups(build_suite(load_world(), "red star", ("blue star", "square")))
    assert all(i.prompt.slots[0] == i.prompt.slots[0].__class__("star", colour="red") for i in g["target"])
    assert {i.prompt.text for i in g["retain:near"] if i.concept == "star"} == {"a green star", "a yellow star"}
    assert {"cross", "heart"} <= {i.concept for i in g["retain:near"]}      # sibling objects
    assert "square" not in {i.concept for k, v in g.items() if k.startswith("retain") for i in v}
    assert all(i.prompt.slots[0].colour == "red" and i.prompt.slots[1].colour != "red" for i in g["leakage"])
    assert all(s.prompt.slots[0].colour == "red" for k in ("evasion:subclass", "evasion:composition",
                                                             "evasion:paraphrase") for s in g[k])
    assert any("crimson" in i.prompt.text for i in g["evasion:paraphrase"])
    assert {"cumulative:blue star", "cumulative:square"} <= set(g)


def test_an_erased_variant_leaves_only_its_instances_out_of_retain():
    g = groups(build_suite(load_world(), "heart", ("red circle",)))
    far = {i.prompt.text for i in g["retain:far"] + g["retain:near"]}
    texts = {i.prompt.text for i in build_suite(load_world(), "heart", max_per_group=1000).items}
    assert "a red circle" not in far and "a red circle" in texts
    assert g["cumulative:red circle"][0].prompt.text == "a red circle"


def test_methods_get_the_variant_in_context_and_keep_its_siblings():
    cp = toy_concept_prompts(load_world(), "red star")
    assert cp.words == ("star",)
    assert all("red" in t or "crimson" in t for t in cp.target)
    assert all("star" not in a and ("red" in a or "crimson" in a) for a in cp.anchor)   # "a red star" -> "a red"
    assert {"a blue star", "a green star", "a yellow star"} <= set(cp.preserve)
    assert not any("red star" in p for p in cp.preserve)


def test_preflight_accepts_variants_for_the_toy_judge_only():
    from erasecore.errors import ConfigError
    from orchestrator.preflight import preflight
    from orchestrator.spec import load_spec

    settled = preflight(load_spec(None, ["name=v", "concepts=[red star,outline square]"]), run=False)
    assert settled.judge == "toyworld"
    with pytest.raises(ConfigError, match="variant"):
        preflight(load_spec(None, ["name=v", "concepts=[red star]", "validation.judge=clip",
                                   "concepts_from=toyworld"]), run=False)
