"""A step's candidate search: its plan and order (by what committed for concepts of the same kind), its budget,
the confirmation on fresh seeds of a candidate chosen after a rejection, and the same commits on resume.

The executor is the pipelined loop's scripted one (no model): the gate's verdict is a function of the attempt's
settings and, here, of the noise seeds its gate draws (the request's validation.seed_offset)."""
from __future__ import annotations

import pytest

from erasecore.errors import ConfigError, MethodConfigError
from orchestrator import search
from orchestrator.gate import decide
from orchestrator.loop import CampaignLoop
from orchestrator.manifest import Manifest
from orchestrator.pipeline import PipelinedLoop
from orchestrator.policy import Exhausted, PastAttempt, next_attempt
from orchestrator.preflight import preflight
from orchestrator.search import Setting
from orchestrator.spec import load_spec
from tests.unit.test_pipeline import Killed, Scripted, campaign, report

SEARCH = ["search.candidates=[{method: uce, hparams: {erase_scale: 0.5}}, {method: rece}]",
          "search.methods=[esd-x]", "search.strengths=[1.0, 2.0]"]


def settings(plan) -> list[tuple]:
    return [(s.method, s.overrides()) for s in plan]


def test_the_plan_is_the_method_then_the_candidates_then_the_grid():
    s = load_spec(None, ["name=t", "concepts=[star]", *SEARCH])
    assert settings(search.plan(s)) == [("uce", {}), ("uce", {"erase_scale": 0.5}), ("rece", {}),
                                        ("esd-x", {"eta": 1.0}), ("esd-x", {"eta": 2.0})]
    cut = load_spec(None, ["name=t", "concepts=[star]", *SEARCH, "search.max_attempts=2", "search.from_first=true"])
    assert settings(search.plan(cut)) == [("uce", {"erase_scale": 0.5}), ("rece", {})]


def test_candidates_that_committed_for_the_same_kind_go_first_latest_first():
    s = load_spec(None, ["name=t", "concepts=[star]", *SEARCH])
    esd2, rece = Setting.of("esd-x", {"eta": 2.0}), Setting.of("rece", {})
    assert settings(search.plan(s, (esd2, rece))) == [("uce", {}), ("esd-x", {"eta": 2.0}), ("rece", {}),
                                                      ("uce", {"erase_scale": 0.5}), ("esd-x", {"eta": 1.0})]


def test_a_candidate_guided_to_the_concepts_own_word_is_left_out_of_its_plan():
    guided = ["search.candidates=[{method: speed, hparams: {guide: heart}}, {method: speed, hparams: {guide: star}}]"]
    s = load_spec(None, ["name=t", "concepts=[red heart, red star]", *guided])
    assert settings(search.plan(s, concept="red heart")) == [("uce", {}), ("speed", {"guide": "star"})]
    assert settings(search.plan(s, concept="red star")) == [("uce", {}), ("speed", {"guide": "heart"})]
    assert settings(search.plan(s, concept="red heart + green star")) == [("uce", {})]
    assert len(search.plan(s)) == 3                  # no concept named: every candidate
    rejected = decide(report("red heart", "forgetting"), s.gate)
    past = [PastAttempt("uce", {}, rejected), PastAttempt("speed", {"guide": "star"}, rejected)]
    assert "every candidate" in next_attempt(s, "red heart", past).reason


def test_the_budget_in_attempts_and_seconds_ends_the_search():
    s = load_spec(None, ["name=t", "concepts=[star]", *SEARCH, "search.max_seconds=100"])
    rejected = decide(report("star", "forgetting"), s.gate)
    past = [PastAttempt("uce", {}, rejected, 60.0)]
    assert next_attempt(s, "star", past).method == "uce"            # 60 s of 100 spent: the next candidate
    past.append(PastAttempt("uce", {"erase_scale": 0.5}, rejected, 50.0))
    done = next_attempt(s, "star", past)
    assert isinstance(done, Exhausted) and "100 s spent" in done.reason
    every = [PastAttempt(c.method, c.overrides(), rejected) for c in search.plan(s)]
    assert "every candidate" in next_attempt(s, "star", every).reason


def test_bad_search_settings_are_one_error_line():
    with pytest.raises(ConfigError, match="search.methods\\[0\\]: unknown method 'bogus'"):
        load_spec(None, ["name=t", "concepts=[star]", "search.methods=[bogus]"])
    with pytest.raises(ConfigError, match="search.strengths must be factors > 0"):
        load_spec(None, ["name=t", "concepts=[star]", "search.methods=[uce]", "search.strengths=[0]"])
    s = load_spec(None, ["name=t", "concepts=[star]", "search.candidates=[{method: uce, hparams: {bogus: 1}}]"])
    with pytest.raises(MethodConfigError, match="search.candidates\\[0\\]: hparams.uce: .* no hyperparameter 'bogus'"):
        preflight(s, run=False)


class Seeded(Scripted):
    """The gate's verdict also depends on the seeds it draws: `verdict(concept, method, hparams, seed_offset)`."""

    def __init__(self, verdict, die_at: int = 0):
        super().__init__(lambda *a: "pass")
        self.seeded, self.gates, self.dirs, self.die_at = verdict, [], [], die_at

    def validate(self, a, request, candidate, watch=None):
        self.gates.append((a.step, a.attempt, request.validation.seed_offset))
        self.dirs.append(request.out_dir)
        if len(self.gates) == self.die_at:
            raise Killed()
        verdict = self.seeded(a.concept, a.method, a.hparams, request.validation.seed_offset)
        out = super().validate(a, request, candidate, watch)
        return type(out)("validate", report(a.concept, verdict), "", None, 0.0, "")


def lucky_rece(concept, method, hparams, offset):
    """star: uce under-erases; rece passes its own gate by chance only (fails on fresh seeds); esd-x passes."""
    if concept != "star":
        return "pass"
    if method == "uce":
        return "forgetting"
    if method == "rece":
        return "pass" if offset == 0 else "retain"
    return "pass"


def run_search(tmp_path, name, executor, *extra, loop=CampaignLoop):
    s, m = campaign(tmp_path, name, "concepts=[star,square]", *SEARCH, *extra)
    loop(preflight(s, run=False), m, executor).run()
    return s, Manifest.open(s.storage_path)


def test_a_candidate_that_passed_by_chance_is_refused_by_its_confirmation(tmp_path):
    executor = Seeded(lucky_rece)
    s, m = run_search(tmp_path, "lucky", executor)
    star = m.history.attempts_for(1)
    assert [(a.method, a.decision.verdict) for a in star][:4] == [("uce", "reject"), ("uce", "reject"),
                                                                  ("rece", "commit"), ("esd-x", "commit")]
    assert star[2].confirmation.verdict == "reject" and "retain" in star[2].confirmation.failed
    assert star[3].confirmation.verdict == "commit" and m.history.commit_for(1).attempt == 4
    # each confirmation drew its own fresh seeds; square passed at once: no confirmation
    assert [g for g in executor.gates if g[0] == 1] == [(1, 1, 0), (1, 2, 0), (1, 3, 0), (1, 3, 3000), (1, 4, 0),
                                                       (1, 4, 4000)]
    assert m.history.attempts_for(2)[0].confirmation is None and m.history.commit_for(2).attempt == 1
    assert executor.dirs[3] == str(m.root / "steps/1-star/attempt-3/confirm")   # beside the attempt's own gate


def test_without_confirmation_the_lucky_candidate_commits(tmp_path):
    s, m = run_search(tmp_path, "unconfirmed", Seeded(lucky_rece), "search.confirm=false")
    assert m.history.commit_for(1).attempt == 3


@pytest.mark.parametrize("loop", [CampaignLoop, PipelinedLoop], ids=["serial", "pipelined"])
def test_a_search_killed_at_any_gate_commits_the_same_candidates_on_resume(tmp_path, loop):
    _, whole = run_search(tmp_path, "whole", Seeded(lucky_rece), loop=loop)
    want = [(c.step, c.attempt, c.delta.sha256) for c in whole.history.commits]
    for n in range(1, 10):
        try:
            run_search(tmp_path / str(n), "broken", Seeded(lucky_rece, die_at=n), loop=loop)
        except Killed:
            pass
        s, m = run_search(tmp_path / str(n), "broken", Seeded(lucky_rece), loop=loop)
        assert [(c.step, c.attempt, c.delta.sha256) for c in m.history.commits] == want, n


def test_a_concept_of_the_kind_that_passed_earlier_tries_that_candidate_first(tmp_path):
    executor = Seeded(lambda c, method, hp, off: "forgetting" if method == "uce" else "pass")
    s, m = campaign(tmp_path, "kinds", "concepts=[star,square,round]", *SEARCH)
    CampaignLoop(preflight(s, run=False), m, executor).run()
    tried = {step: [a.method for a in m.history.attempts_for(step)] for step in (1, 2, 3)}
    # star (object): uce, uce 0.5, then rece commits; square (object): uce, then rece at once;
    # round (superclass): no earlier commit of its kind, the declared order
    assert tried == {1: ["uce", "uce", "rece"], 2: ["uce", "rece"], 3: ["uce", "uce", "rece"]}


def test_the_report_shows_every_candidate_its_confirmation_and_the_chosen_one(tmp_path):
    from orchestrator.outputs.report import render_report

    s, m = run_search(tmp_path, "shown", Seeded(lucky_rece))
    page = render_report(s.storage_path)
    section = page[page.index("<section id=candidates>"):]
    section = section[:section.index("</section>")]
    rows = section.split("<tr>")[2:]
    assert len(rows) == 4 and all(">star<" in r for r in rows)   # square took one attempt: not listed
    rece, esd = rows[2], rows[3]
    assert ">rece {}<" in rece and ">commit<" in rece and ">reject<" in rece and "confirmation: retain" in rece
    assert ">yes<" in esd and ">yes<" not in rece
