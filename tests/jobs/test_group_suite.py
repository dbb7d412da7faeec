"""A group step's suite and prompts (jobs/validation/group_suite.py, jobs/training/concept_prompts.py): each
member's questions, none of them retained, each erased through its own prompts."""
from __future__ import annotations

from erasecore.contracts import StepRequest, ValidationSpec
from jobs.training.concept_prompts import concept_prompts
from jobs.validation.validator import for_request

GROUP = "red star + blue star"


def suite_of(concept: str, erased_before: tuple[str, ...] = ()):
    request = StepRequest("t", 2, 1, concept, "uce", {}, "toyworld", (), "/tmp/unused", erased_before=erased_before,
                          validation=ValidationSpec(judge="toyworld", max_prompts_per_group=100))
    return for_request(request, "toyworld", log=lambda *a: None)[1]


def test_a_group_asks_each_members_questions_and_retains_neither():
    group, red, blue = suite_of(GROUP, ("square",)), suite_of("red star", ("square",)), suite_of("blue star", ("square",))
    asked = {(i.group, i.prompt.text, i.concept) for i in group.items}
    for member in (red, blue):
        own = {(i.group, i.prompt.text, i.concept) for i in member.items if i.group in ("target", "leakage")}
        assert own <= asked
    retained = [i.prompt.text for i in group.items if i.group.startswith("retain")]
    assert retained and not any(t.endswith(("red star", "blue star")) for t in retained)
    assert any(t.endswith("blue star") for t in (i.prompt.text for i in red.items if i.group == "retain:near"))
    assert {i.group for i in group.items if i.group.startswith("cumulative")} == {"cumulative:square"}
    assert len(asked) == len(group.items)   # a prompt both members ask is asked once


def test_a_groups_erase_prompts_are_its_members_merged():
    prompts = concept_prompts(GROUP, (), "toyworld")
    parts = [concept_prompts(m, (), "toyworld") for m in ("red star", "blue star")]
    assert prompts.parts == tuple(parts) and prompts.target == parts[0].target + parts[1].target
