import pytest

from jobs.toyworld.world import UnknownConceptError, load_world


def test_hierarchy_meets_the_world_bars():
    w = load_world()
    assert len(w.objects) >= 10 and len(set(w.objects)) == len(w.objects)
    assert len(w.superclasses) >= 4
    assert len(w.colours) >= 4 and len(w.sizes) >= 2 and len(w.strokes) >= 2
    assert min(w.sizes.values()) >= 14


def test_concepts_resolve_by_kind():
    w = load_world()
    assert w.concept("star").kind == "object"
    assert w.concept("round").kind == "superclass"
    assert w.members(w.concept("round")) == ("circle", "semicircle", "crescent")
    assert w.concept("red").kind == "colour"
    assert w.superclass_of("diamond") == "polygon"


def test_unknown_concept_names_the_known_ones():
    with pytest.raises(UnknownConceptError, match="unknown concept 'car'.*triangle"):
        load_world().concept("car")


def test_held_out_combinations_are_never_trained_on():
    w = load_world()
    train = set(w.training_specs())
    assert w.held_out and not (w.held_out & train)
    assert len(train) + len(w.held_out) == len(w.all_specs())
    assert {s.shape for s in w.held_out} == set(w.objects)
