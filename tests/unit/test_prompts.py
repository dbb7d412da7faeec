import numpy as np

from jobs.toyworld.concept_prompts import toy_concept_prompts
from jobs.training.concept_prompts import strip_words
from jobs.toyworld.prompts import Slot, pair, sample_training_prompt, single
from jobs.toyworld.world import ObjectSpec, load_world


def test_prompt_text_and_ground_truth():
    w = load_world()
    p = single(w, Slot("triangle", colour="red", size="small", material="outline"))
    assert p.text == "a small red outline triangle" and not p.is_pair
    q = pair(w, Slot("circle", "blue"), Slot("star", "green"))
    assert q.text == "a blue circle and a green star" and q.is_pair
    assert single(w, Slot("square", colour="red"), template=1, variant=1).text == "a photo of a crimson box"


def test_slot_covers_superclass_members_and_stated_attributes():
    w = load_world()
    assert Slot("round", colour="red").covers(w, ObjectSpec("crescent", "red", "large", "solid"))
    assert not Slot("round", colour="red").covers(w, ObjectSpec("crescent", "blue", "large", "solid"))
    assert not Slot("square").covers(w, ObjectSpec("diamond", "red", "large", "solid"))


def test_training_prompts_are_truthful_and_avoid_held_out_combinations():
    w = load_world()
    rng = np.random.default_rng(0)
    allowed = set(w.training_specs())
    for _ in range(300):
        prompt, specs = sample_training_prompt(w, rng, allowed)
        assert all(s in allowed for s in specs)
        assert all(slot.covers(w, s) for slot, s in zip(prompt.slots, specs))


def test_anchor_prompts_drop_only_the_concept_words():
    assert strip_words("a photo of a big crimson box", ("square", "box")) == "a photo of a big crimson"
    cp = toy_concept_prompts(load_world(), "round")
    assert len(cp.target) == len(cp.anchor)
    assert not any(w in a.split() for a in cp.anchor for w in cp.words)
    assert not any("circle" in p.split() for p in cp.preserve)
