"""A group step's suite: the suites of its members (erasecore/concepts.py `step_members`), merged.

Each member's suite is its provider's own, built as if the group's other members were erased before it:
they leave its retain groups (they are being erased, not kept) and their prompts are asked by their
own target groups, so the cumulative groups the provider adds for them are dropped. An item two members'
suites share (a far object's prompt, an earlier concept's cumulative check) is asked once.
"""
from __future__ import annotations

import dataclasses

from erasecore.concepts import step_members
from jobs.validation.suite import Suite


def group_gate(provider, request, name: str):
    """(judge, suite) of a group step, from its provider's gate on each member."""
    members = step_members(request.concept)
    judge, suites = None, []
    for m in members:
        others = tuple(o for o in members if o != m)
        judge, suite = provider.gate(dataclasses.replace(
            request, concept=m, erased_before=tuple(request.erased_before) + others), name)
        suites.append(suite)
    return judge, merged_suite(request.concept, suites, members)


def merged_suite(target: str, suites: list[Suite], members: tuple[str, ...]) -> Suite:
    own = {f"cumulative:{m}" for m in members}
    seen, items, unjudged = set(), [], {}
    for suite in suites:
        unjudged.update(suite.unjudged)
        for item in suite.items:
            key = (item.group, item.prompt, item.concept)
            if item.group not in own and key not in seen:
                seen.add(key)
                items.append(item)
    return Suite(target, tuple(items), unjudged=unjudged, thin=any(s.thin for s in suites))
