"""Per-concept adapter names: every concept gets a name peft and diffusers accept, distinct within an export."""
from __future__ import annotations

import re

import pytest

from orchestrator.outputs.adapters import adapter_name, adapter_names

VALID = re.compile(r"[A-Za-z_][0-9A-Za-z_]*")   # a Python identifier, ASCII: never '.' or a space


@pytest.mark.parametrize("concept, name", [("star", "star"), ("red star", "red_star"), ("Van Gogh", "Van_Gogh"),
                                           ("small blue circle", "small_blue_circle"), ("a.b/c", "a_b_c"),
                                           ("  nude person! ", "nude_person"), ("3d render", "c_3d_render"),
                                           ("???", "step4"), ("café", "caf")])
def test_a_concept_becomes_a_valid_adapter_name(concept, name):
    assert adapter_name(concept, 4) == name
    assert VALID.fullmatch(name)


def test_names_that_would_clash_get_their_step():
    names = adapter_names([(1, "red star"), (2, "red-star"), (3, "square"), (4, "red_star")])
    assert names == ["red_star", "red_star_step2", "square", "red_star_step4"]
    assert len(set(names)) == len(names)
