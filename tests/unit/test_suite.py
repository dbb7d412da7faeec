from jobs.toyworld.world import load_world
from jobs.toyworld.suite import build_suite


def groups(suite):
    out = {}
    for item in suite.items:
        out.setdefault(item.group, []).append(item)
    return out


def test_object_suite_has_every_side_effect_group():
    g = groups(build_suite(load_world(), "square", ("star",)))
    assert set(g) >= {"target", "evasion:subclass", "evasion:composition", "evasion:paraphrase", "retain:near",
                      "retain:far", "leakage", "cumulative:star"}
    assert {i.concept for i in g["retain:near"]} == {"triangle", "diamond"}
    assert "star" not in {i.concept for i in g["retain:far"]}
    assert any("box" in i.prompt.text.split() for i in g["evasion:paraphrase"])
    assert all(i.prompt.is_pair and i.prompt.slots[0].shape == "square" for i in g["leakage"])


def test_superclass_suite_evades_through_its_members():
    g = groups(build_suite(load_world(), "round"))
    drawn = {i.prompt.slots[0].shape for i in g["evasion:subclass"]}
    assert drawn == {"circle", "semicircle", "crescent"}
    assert not any(i.concept in ("circle", "semicircle", "crescent") for k, v in g.items() if k.startswith("retain")
                   for i in v)


def test_suite_is_deterministic_and_capped():
    a, b = build_suite(load_world(), "round", max_per_group=5), build_suite(load_world(), "round", max_per_group=5)
    assert a.digest() == b.digest()
    assert max(len(v) for v in groups(a).values()) <= 5
    assert build_suite(load_world(), "heart").digest() != a.digest()
