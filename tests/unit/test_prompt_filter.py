"""The guard's prompt pre-filter (erasecore/prompt_filter.py): pure, on the shipped concept sets, with a made-up
text encoder for its encoder stage."""
from __future__ import annotations

import math

import pytest

from erasecore.concepts import load_concept_set
from erasecore.prompt_filter import (
    PromptFilter,
    calibrate,
    osa_distance,
    phrases_of,
    tokenize,
)

TOY = load_concept_set("toyworld")
COCO = load_concept_set("coco-objects")


@pytest.fixture(scope="module")
def toy() -> PromptFilter:
    return PromptFilter.build(TOY, ("star", "square"))


@pytest.mark.parametrize("prompt, concepts", [
    ("a red star", ("star",)), ("A BIG RED STARS!!", ("star",)), ("a photo of a small box", ("square",)),
    ("squares and stars", ("square", "star")), ("a Star-shaped, blue thing", ("star",)),
    ("a strar", ("star",)), ("a sqaure", ("square",)), ("a squre", ("square",)), ("a squarre", ("square",)),
    ("st ar", ("star",)), ("a redstar", ("star",)), ("bluesquare", ("square",)), ("two strars", ("star",)),
    ("star red a", ("star",)), ("box blue big a of photo", ("square",)),
])
def test_the_erased_concepts_are_found_in_any_case_order_spelling_or_plural(toy, prompt, concepts):
    assert toy.check(prompt).concepts == concepts


@pytest.mark.parametrize("prompt", [
    "a diamond", "a small blue diamond", "a triangle next to a cross", "a heart", "a photo of a yellow hourglass",
    "a symbol", "polygon", "there is a crimson circle", "a big hollow house", "a pointer and a disk", "a love",
    "a diamnod", "a tirangle", "a crescent next to a semicircle", "an image of a large green arrow",
])
def test_neighbours_and_everything_else_the_set_knows_pass(toy, prompt):
    """The set's own words for retained concepts (diamond is square's near neighbour), misspelled ones
    included when they are nearer to their own word, are never read as an erased concept."""
    assert toy.check(prompt).matches == ()


def test_a_short_word_is_never_read_fuzzily_and_a_far_misspelling_is_not_read():
    f = PromptFilter.build(COCO, ("cat", "motorcycle"))
    assert f.check("a bat").matches == () and f.check("a cta").matches == ()     # 3 letters: exact only
    assert f.check("a motorcylce").concepts == ("motorcycle",)                   # 10 letters: a swap is 1 edit
    assert f.check("a mtorcylce").concepts == ("motorcycle",)                    # 2 edits allowed from 8 letters
    assert f.check("a mtrcylce").matches == ()                                   # 3 edits: not read


def test_a_tie_between_an_erased_word_and_a_known_one_goes_to_the_known_one():
    """'hove' is one edit from 'love' (heart's synonym) and from 'home' (house's): erasing heart alone, the
    retained word wins; a misspelling one edit from an erased word only is read."""
    heart = PromptFilter.build(TOY, ("heart",))
    assert heart.check("a hove").matches == ()
    assert heart.check("a lovr").concepts == ("heart",)
    assert PromptFilter.build(TOY, ("heart", "house")).check("a hove").concepts == ("heart", "house")
    assert PromptFilter.build(COCO, ("bottle",)).check("a bottel").concepts == ("bottle",)
    assert PromptFilter.build(COCO, ("cup",)).check("a bottel").matches == ()   # retained: its own word


def test_a_several_word_entry_matches_in_any_order_within_its_window():
    f = PromptFilter.build(COCO, ("teddy bear", "car"))
    assert f.check("a bear teddy on a couch").concepts == ("teddy bear",)
    assert f.check("a teddybear").concepts == ("teddy bear",)
    assert f.check("a stuffed, brown bear").concepts == ("teddy bear",)           # its synonym "stuffed bear"
    assert f.check("a vehicle, passenger and four-wheeled").concepts == ("car",)   # a paraphrase, reordered
    far = "a four-wheeled cat sat on a red chair by the old passenger vehicle"
    assert f.check(far).matches == ()                                              # spread past the window


def test_a_superclass_brings_its_members_and_theirs_and_a_variant_its_wordings():
    f = PromptFilter.build(TOY, ("round",))
    found = {m.text: (m.concept, m.kind) for m in f.check("a disk, a crescent and a round thing").matches}
    assert found == {"disk": ("round", "subclass"), "crescent": ("round", "subclass"), "round": ("round", "name")}
    v = PromptFilter.build(TOY, ("red star",))
    assert v.check("a crimson star").concepts == ("red star",) and v.check("star, red").concepts == ("red star",)
    assert v.check("a blue star").matches == () and v.check("a red circle").matches == ()
    assert {p.kind for p in phrases_of(TOY, "red star")} == {"name", "variant"}


def test_a_match_says_where_and_how(toy):
    (m,) = toy.check("Look: a Strar!").matches
    assert (m.concept, m.wording, m.kind, m.how, m.text, (m.start, m.end)) == \
        ("star", "star", "name", "fuzzy", "Strar", (8, 13))
    assert m.score == pytest.approx(0.8)
    (exact,) = toy.check("a box").matches
    assert (exact.wording, exact.kind, exact.how, exact.score) == ("box", "synonym", "exact", 1.0)


def test_tokens_are_folded_and_plurals_found_only_when_the_singular_is_known():
    words = [t.word for t in tokenize("Étoiles, BOXES and houses!", frozenset({"box", "house"}))]
    assert words == ["etoiles", "box", "and", "house"]   # "etoile" is no word the filter knows
    assert osa_distance("star", "tsar", 1) == 1 and osa_distance("star", "rats", 1) == 2


# ---- the encoder stage, with a made-up encoder ----------------------------------------------

def made_up_encoder(words: dict[str, int], dims: int = 32):
    """'<template> <word>' -> the unit vector of the word's concept index; unknown words -> (1, 1, ..., 1)."""
    def embed(texts):
        out = []
        for text in texts:
            word = text.split()[-1]
            i = words.get(word)
            out.append([1.0] * dims if i is None else [1.0 if j == i else 0.05 for j in range(dims)])
        return out
    return embed


def toy_words(extra: dict[str, str]) -> dict[str, int]:
    names = sorted(n for n, e in TOY.concepts.items() if e.kind != "attribute")
    index = {n: i for i, n in enumerate(names)}
    words = {w: index[n] for n in names for w in (n, *TOY.concepts[n].synonyms)}
    words.update({w: index[c] for w, c in extra.items()})
    return words


def test_the_encoder_reads_a_synonym_the_set_does_not_list_as_its_concept():
    embed = made_up_encoder(toy_words({"cube": "square", "tile": "diamond"}))
    f = PromptFilter.build(TOY, ("star", "square"), embedder=embed)
    (m,) = f.check("a small cube").matches
    assert (m.concept, m.how, m.kind, m.text) == ("square", "encoder", "encoder", "cube") and m.score > 0.99
    assert f.check("a tile").matches == ()        # nearest to diamond, a retained concept
    assert f.check("a qwerty").matches == ()      # like nothing: below the threshold
    assert PromptFilter.build(TOY, ("star", "square")).check("a small cube").matches == ()   # no encoder: missed
    assert 0.1 < f.encoder.threshold < 0.99 and "least similar wordings" in f.encoder.calibration


def test_the_threshold_is_midway_and_off_when_the_encoder_cannot_tell_concepts_apart():
    anchors = (("circle", "circle", (1.0, 0.0)), ("circle", "disk", (0.8, 0.6)), ("star", "star", (0.0, 1.0)))
    threshold, note = calibrate(TOY, anchors)
    assert threshold == pytest.approx((0.8 + 0.6) / 2) and "0.800" in note and "0.600" in note
    blurred = (("circle", "circle", (1.0, 0.0)), ("circle", "disk", (0.0, 1.0)), ("star", "star", (0.6, 0.8)))
    threshold, note = calibrate(TOY, blurred)
    assert math.isinf(threshold) and note.startswith("off")
