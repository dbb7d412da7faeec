"""The judge catalog (erasecore/judges.py) is filled from the entry-point group `concept_erase.judges`,
the shipped judges included; a judge's worker code is found through its entry's provider string."""
from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from erasecore import judges
from erasecore.errors import ConfigError
from erasecore.models import TOY

SHIPPED = ("toyworld", "nudenet", "clip", "vqa", "toyworld-set")


def test_the_entry_point_group_names_every_shipped_judge_and_the_catalog_lists_exactly_those():
    found = {ep.name: ep for ep in entry_points(group=judges.GROUP)}
    assert set(SHIPPED) <= set(found)
    assert set(judges.names()) == set(found)
    assert judges.names()[:len(SHIPPED)] == SHIPPED   # the shipped ones first, in the docs' order
    for name in SHIPPED:
        entry = found[name].load()
        assert isinstance(entry, judges.JudgeEntry) and entry.name == name and judges.get(name) is entry


def test_each_entry_names_its_worker_provider_without_importing_it():
    for entry in judges.entries():
        module, _, attribute = entry.provider.partition(":")
        assert module.startswith("jobs.") and attribute, entry


def test_a_judges_facts_are_its_entrys():
    assert judges.judge_for(TOY, "auto") == "toyworld"
    assert judges.judge_for("some/hub-model", "auto", "nudenet") == "nudenet"
    assert judges.judge_for("some/hub-model", "auto", "florence") is None
    assert judges.judge_for("some/hub-model", "clip") == "clip"
    assert [e.name for e in judges.entries() if e.needs_model] == ["clip", "vqa"]
    assert judges.get("vqa").example_weights == "Salesforce/blip-vqa-base"
    assert {e.name: e.concept_set for e in judges.entries() if e.concept_set} == \
        {"toyworld": "toyworld", "nudenet": "nudity", "toyworld-set": "toyworld"}
    assert judges.find("auto") is None


def test_an_unknown_judge_is_one_line_naming_the_known_ones():
    with pytest.raises(ConfigError, match="'florence' is not in this build .judges: toyworld, nudenet, clip, vqa, toyworld-set"):
        judges.get("florence")


PLUGIN = judges.JudgeEntry("florence", "my_judges.florence:PROVIDER", "a user's own judge, from its own package")


def test_a_plugin_judge_is_found_through_its_own_entry_point(monkeypatch):
    from importlib.metadata import EntryPoint

    installed = list(entry_points(group=judges.GROUP)) + [EntryPoint("florence", f"{__name__}:PLUGIN", judges.GROUP)]
    monkeypatch.setattr(judges, "entry_points", lambda group: installed)
    judges._catalog.cache_clear()
    try:
        assert judges.names() == SHIPPED + ("florence",) and judges.get("florence") is PLUGIN
    finally:
        judges._catalog.cache_clear()
