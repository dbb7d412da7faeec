"""Concept sets as data: the shipped sets load, the toy set is world.yaml's, and every mistake is one line."""
from __future__ import annotations

import pytest
import yaml

from erasecore.concepts import SHIPPED, load_concept_set
from erasecore.errors import ConfigError, UnknownConceptError
from orchestrator.preflight import preflight
from orchestrator.spec import load_spec, spec_hash


def test_the_shipped_toy_set_is_generated_from_world_yaml():
    from jobs.toyworld.concept_set import TARGET, render
    from jobs.toyworld.world import load_world

    assert TARGET.read_text() == render(load_world()), "run: python -m jobs.toyworld.concept_set"
    toy = load_concept_set("toyworld")
    world = load_world()
    assert {n for n, e in toy.concepts.items() if e.kind == "object"} == set(world.objects)
    assert toy.entry("round").subclasses == world.superclasses["round"]
    assert toy.entry("square").near == ("triangle", "diamond") and "box" in toy.entry("square").words


@pytest.mark.parametrize("name", sorted(p.stem for p in SHIPPED.glob("*.yaml")))
def test_every_shipped_set_loads_and_names_a_judge(name):
    concept_set = load_concept_set(name)
    assert concept_set.judge and concept_set.concepts
    kinds = {e.kind for e in concept_set.concepts.values() if e.kind not in ("attribute", "superclass")}
    assert kinds <= set(concept_set.templates), f"{name}: a kind without templates"


def test_an_unknown_concept_names_the_set_and_a_thin_entry_is_allowed_on_request():
    coco = load_concept_set("coco-objects")
    with pytest.raises(UnknownConceptError, match="'unicorn'; the coco-objects concept set .* knows: .*teddy bear"):
        coco.entry("unicorn")
    thin = coco.entry("unicorn", allow_thin=True)
    assert thin.thin and thin.words == ("unicorn",)


@pytest.mark.parametrize("doc, words", [
    ({"name": "x"}, ["non-empty concepts"]),
    ({"concepts": {"car": {"kind": "vehicle"}}}, ["concepts.car.kind", "object"]),
    ({"concepts": {"car": {"kind": "object", "colour": "red"}}}, ["concepts.car", "unknown key 'colour'"]),
    ({"concepts": {"car": {"kind": "object", "near": ["bus"]}}}, ["concepts.car names 'bus'"]),
    ({"concepts": {"car": {"kind": "object", "synonyms": "auto"}}}, ["concepts.car.synonyms", "list"]),
    ({"templates": {"object": ["no slot"]}, "concepts": {"car": {"kind": "object"}}}, ["templates.object"]),
])
def test_a_malformed_concept_set_is_one_config_error_line(tmp_path, doc, words):
    path = tmp_path / "set.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as err:
        load_concept_set(str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_a_campaign_takes_its_concepts_from_a_set_and_keeps_old_spec_hashes(tmp_path):
    base = ["name=c", "concepts=[car,teddy bear]", "model=CompVis/stable-diffusion-v1-4"]
    settled = preflight(load_spec(None, [*base, "concepts_from=coco-objects"]), run=False)
    assert settled.concept_set.name == "coco-objects"
    with pytest.raises(UnknownConceptError, match="allow_thin"):
        preflight(load_spec(None, [*base, "concepts_from=coco-objects", "preserve=[unicorn]"]), run=False)
    thin = preflight(load_spec(None, [*base, "concepts_from=coco-objects", "preserve=[unicorn]", "allow_thin=true"]),
                     run=False)
    assert thin.concept_set.entry("unicorn", allow_thin=True).thin
    with pytest.raises(ConfigError, match="no concept set 'nowhere'.*shipped: artist-styles, coco-objects"):
        preflight(load_spec(None, [*base, "concepts_from=nowhere"]), run=False)
    # The new keys change a spec's hash only when set: journals written before them resume unchanged.
    assert spec_hash(load_spec(None, base)) == spec_hash(load_spec(None, [*base, "concepts_from=''", "allow_thin=false"]))
    assert spec_hash(load_spec(None, base)) != spec_hash(load_spec(None, [*base, "concepts_from=coco-objects"]))


@pytest.mark.parametrize("name", ["toy", "sd14-nudity", "sd14-objects", "sdxl-styles"])
def test_shipped_campaigns_settle_with_their_concept_set_and_judge(name):
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "configs" / "campaigns" / f"{name}.yaml"
    settled = preflight(load_spec(str(path)), run=False)
    assert settled.judge == {"toy": "toyworld", "sd14-nudity": "nudenet", "sd14-objects": "clip",
                             "sdxl-styles": "clip"}[name]
    assert settled.concept_set is not None


def test_a_suite_is_built_from_any_concept_set():
    from jobs.validation.concept_suite import build_concept_suite

    coco = load_concept_set("coco-objects")
    suite = build_concept_suite(coco, "car", erased_before=("dog",), max_per_group=100)
    groups = {g: [i for i in suite.items if i.group == g] for g in suite.groups()}
    assert {"target", "evasion:composition", "evasion:paraphrase", "retain:near", "retain:far", "leakage",
            "cumulative:dog"} <= set(groups)
    assert any("red car" in i.prompt.text for i in groups["evasion:composition"])
    assert any("automobile" in i.prompt.text for i in groups["evasion:paraphrase"])
    assert {i.concept for i in groups["retain:near"]} == {"bus", "truck", "motorcycle"}
    assert "dog" not in {i.concept for i in groups["retain:far"]}          # erased before: not retained
    assert all(i.prompt.is_pair and i.prompt.attribute for i in groups["leakage"])
    for item in groups["leakage"]:   # the other object is asked for another colour: leaking is the only way to it
        asked = item.prompt.text.split(" and a ")[1].removesuffix(f" {item.prompt.other}")
        assert asked in coco.entry("car").attributes["colour"] and asked != item.prompt.attribute
    vehicle = build_concept_suite(coco, "vehicle")
    assert {i.concept for i in vehicle.items if i.group == "evasion:subclass"} == {"vehicle"}
    assert any("bicycle" in i.prompt.text for i in vehicle.items if i.group == "evasion:subclass")
    assert suite.digest() == build_concept_suite(coco, "car", erased_before=("dog",), max_per_group=100).digest()


def test_a_thin_concept_gets_a_templates_only_suite():
    from jobs.validation.concept_suite import build_concept_suite

    suite = build_concept_suite(load_concept_set("coco-objects"), "unicorn", allow_thin=True)
    assert suite.thin and {i.group for i in suite.items} == {"target"}
    assert {"retain:near", "retain:far", "leakage"} <= set(suite.unjudged)


def test_expand_members_puts_each_superclass_after_its_members_once():
    from erasecore.concepts import expand_members

    toy = load_concept_set("toyworld")
    assert expand_members(["star", "round", "square"], toy) == ("star", "circle", "semicircle", "crescent", "round",
                                                                "square")
    assert expand_members(["circle", "round", "crescent"], toy) == ("circle", "semicircle", "crescent", "round")
    assert expand_members(["star"], toy) == ("star",)


def test_expand_members_is_settled_in_preflight_and_resumes_to_the_same_hash(tmp_path):
    from orchestrator.spec import spec_hash

    args = ["name=x", "concepts=[star,round]", "expand=members", f"storage_path={tmp_path}"]
    settled = preflight(load_spec(None, args), run=False)
    assert settled.spec.concepts == ["star", "circle", "semicircle", "crescent", "round"]
    assert spec_hash(preflight(load_spec(None, args), run=False).spec) == spec_hash(settled.spec)
    plain = preflight(load_spec(None, args[:2] + [f"storage_path={tmp_path}"]), run=False)
    assert plain.spec.concepts == ["star", "round"]
    with pytest.raises(ConfigError, match="expand must be one of none, members"):
        load_spec(None, [*args, "expand=all"])


def test_group_steps_join_the_concepts_that_share_a_parent_at_the_first_ones_place():
    from erasecore.concepts import erased_by, group_steps, step_members

    toy = load_concept_set("toyworld")
    queue = ["red star", "green square", "blue star", "circle", "star", "semicircle"]
    steps = group_steps(queue, toy)
    assert steps == ("red star + blue star", "green square", "circle + semicircle", "star")
    assert erased_by(steps) == ("red star", "blue star", "green square", "circle", "semicircle", "star")
    assert step_members("red star+ blue star") == ("red star", "blue star") and step_members("star") == ("star",)


def test_steps_group_is_settled_in_preflight_and_a_concept_is_in_one_step_only(tmp_path):
    from orchestrator.spec import spec_hash

    args = ["name=x", "concepts=[red star,green star,square]", f"storage_path={tmp_path}"]
    settled = preflight(load_spec(None, [*args, "steps=group"]), run=False)
    assert settled.spec.concepts == ["red star + green star", "square"]
    assert settled.kinds() == {"red star + green star": "group:variant", "square": "object"}
    assert spec_hash(settled.spec) != spec_hash(preflight(load_spec(None, args), run=False).spec)
    written = preflight(load_spec(None, ["name=x", "concepts=[red star + green star, square]",
                                         f"storage_path={tmp_path}"]), run=False)
    assert written.spec.concepts == ["red star + green star", "square"]   # a group written out is one step too
    with pytest.raises(ConfigError, match="duplicate concepts: red star"):
        load_spec(None, ["name=x", "concepts=[red star + green star, red star]"])
    with pytest.raises(ConfigError, match="steps must be one of concept, group, auto"):
        load_spec(None, [*args, "steps=sometimes"])
    auto = preflight(load_spec(None, [*args, "steps=auto"]), run=False)   # the group step, then its members
    assert auto.spec.concepts == ["red star + green star", "red star", "green star", "square"]
    assert auto.kinds()["red star"] == "variant" and auto.kinds()["red star + green star"] == "group:variant"
    with pytest.raises(UnknownConceptError, match="unicorn"):
        preflight(load_spec(None, ["name=x", "concepts=[star + unicorn]", f"storage_path={tmp_path}"]), run=False)


def test_the_judge_check_asks_each_concept_once_when_steps_auto_queues_it_twice(tmp_path):
    from orchestrator.judge_check import requests

    settled = preflight(load_spec(None, ["name=x", "concepts=[red star,green star,square]", "steps=auto",
                                         f"storage_path={tmp_path}"]), run=False)
    assert [(r.step, r.concept) for r in requests(settled)] == [(1, "red star"), (1, "green star"), (4, "square")]


def test_a_settled_steps_auto_queue_reloads_and_settles_to_itself(tmp_path):
    """The journal keeps the settled spec (spec.yaml); status and resume load and settle it again."""
    from orchestrator.spec import resolved_yaml

    args = ["name=x", "concepts=[red star,green star,square]", "steps=auto", f"storage_path={tmp_path}"]
    settled = preflight(load_spec(None, args), run=False).spec
    (tmp_path / "spec.yaml").write_text(resolved_yaml(settled))
    again = preflight(load_spec(str(tmp_path / "spec.yaml")), run=False).spec
    assert again.concepts == settled.concepts == ["red star + green star", "red star", "green star", "square"]
    # a concept twice is still refused otherwise: under another `steps`, twice alone, or before its group
    for concepts, steps in (("[red star + green star, red star]", "concept"), ("[red star, red star]", "auto"),
                            ("[red star, red star + green star]", "auto")):
        with pytest.raises(ConfigError, match="duplicate concepts: red star"):
            load_spec(None, ["name=x", f"concepts={concepts}", f"steps={steps}"])
