"""The pipelined loop with an in-process executor whose phases finish in a scripted order (no model, no Ray).

The gate's verdict is a function of (concept, method, hparams), so the serial loop and the pipelined
loop face the same candidates; the pipelined one must reach exactly the serial decisions and commits,
never commit a speculative candidate after its parent's rejection, and commit the lowest passing attempt.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from erasecore.contracts import DeltaRef, Estimate, GateReport
from erasecore.errors import CommitError
from orchestrator.gate import GateDecision
from orchestrator.loop import CampaignLoop, PhaseOutput
from orchestrator.manifest import DISCARDED, Manifest
from orchestrator.pipeline import PipelinedLoop
from orchestrator.preflight import preflight
from orchestrator.spec import load_spec

GOOD = Estimate(0.99, 0.97, 1.0, 96)


def report(concept: str, verdict: str) -> GateReport:
    """A report the real gate judges as `verdict`: "pass", "forgetting" (under-erased) or "retain" (over-erased)."""
    forgetting = Estimate(0.62, 0.55, 0.7, 96) if verdict == "forgetting" else Estimate(0.97, 0.92, 0.99, 96)
    retain = Estimate(0.6, 0.5, 0.7, 96) if verdict == "retain" else GOOD
    return GateReport(concept=concept, forgetting=forgetting, target_acc=Estimate(0.03, 0.01, 0.07, 96),
                      base_target_acc=0.9, evasion={}, retain=retain, retain_by_distance={},
                      leakage=Estimate(0.0, 0.0, 0.04, 96), kl=0.0, kl_base_noise=0.0, cumulative={},
                      images_generated=96, early_stopped=False, seconds=0.1, drift=Estimate(0.0, 0.0, 0.04, 96))


class Scripted:
    """Both executor interfaces. `verdict(concept, method, hparams)` is the gate's answer; `pick` chooses
    which running phase finishes next (the last submitted by default: work ahead lands before the head)."""

    def __init__(self, verdict, pick=lambda tickets: tickets[-1]):
        self.verdict, self.pick = verdict, pick
        self.running: dict[int, tuple] = {}
        self.count, self.cancelled = 0, []

    def erase(self, a, request, watch=None) -> PhaseOutput:
        out = Path(request.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        # The delta's bytes depend on what it was built on, as a real erase's do.
        payload = repr((a.concept, a.method, sorted(a.hparams.items()), [p.sha256 for p in request.parents]))
        (out / "delta.safetensors").write_text(payload)
        ref = DeltaRef(str(out / "delta.safetensors"), hashlib.sha256(payload.encode()).hexdigest())
        return PhaseOutput("erase", ref, "", None, 0.0, "")

    def validate(self, a, request, candidate, watch=None) -> PhaseOutput:
        return PhaseOutput("validate", report(a.concept, self.verdict(a.concept, a.method, a.hparams)), "", None,
                           0.0, "")

    def submit(self, a, request, phase, candidate=None, watch=None):
        self.count += 1
        self.running[self.count] = (a, request, phase, candidate)
        return self.count

    def wait(self, tickets):
        ticket = self.pick(sorted(tickets))
        a, request, phase, candidate = self.running.pop(ticket)
        if phase == "baseline":
            return ticket, self.baseline(a, request)
        return ticket, self.erase(a, request) if phase == "erase" else self.validate(a, request, candidate)

    def baseline(self, a, request) -> PhaseOutput:
        return PhaseOutput("baseline", 96, "", None, 0.0, "")

    def cancel(self, tickets):
        self.cancelled += list(tickets)
        for t in tickets:
            self.running.pop(t, None)


def campaign(tmp_path: Path, name: str, *overrides: str):
    s = load_spec(None, [f"name={name}", "concepts=[star,square,round]", f"storage_path={tmp_path / name}",
                         "ladder=[esd-x]", *overrides])
    return s, Manifest.create(s.storage_path, s)


def decisions(m: Manifest) -> list[tuple]:
    """What the gate decided, attempt by attempt, leaving out discarded attempts and attempt numbers."""
    return [(a.step, a.method, sorted(a.hparams.items()), a.decision.verdict, a.decision.failed)
            for a in sorted(m.history.attempts, key=lambda a: (a.step, a.attempt)) if a.status != DISCARDED]


def serial(tmp_path: Path, verdict, *overrides: str) -> Manifest:
    s, m = campaign(tmp_path, "serial", *overrides)
    assert CampaignLoop(preflight(s, run=False), m, Scripted(verdict)).run().status == "finished"
    return m


def piped(tmp_path: Path, verdict, *overrides: str, speculative=True, parallel=1, pick=None) -> tuple:
    s, m = campaign(tmp_path, "piped", *overrides)
    executor = Scripted(verdict, **({"pick": pick} if pick else {}))
    outcome = PipelinedLoop(preflight(s, run=False), m, executor, (), speculative, parallel).run()
    return outcome, m, executor


def first_star_fails(concept, method, hparams):
    return "forgetting" if concept == "star" and not hparams else "pass"


def test_a_speculative_candidate_is_never_committed_after_its_parent_is_rejected(tmp_path):
    outcome, m, executor = piped(tmp_path, first_star_fails)
    assert outcome.status == "finished" and outcome.committed == ("star", "square", "round")
    h = m.history
    # square ran on star's first candidate, passed its own gate, and was discarded when that parent was rejected.
    dropped = [a for a in h.attempts_for(2) if a.status == DISCARDED]
    assert len(dropped) == 1 and dropped[0].speculative == "parent" and dropped[0].decision.committed
    assert "parent" in dropped[0].discarded and executor.cancelled == []
    # Every commit was built on exactly the committed bytes before it.
    shas = [c.delta.sha256 for c in sorted(h.commits, key=lambda c: c.step)]
    for c in h.commits:
        attempt = next(a for a in h.attempts_for(c.step) if a.attempt == c.attempt)
        assert list(attempt.parents) == shas[:c.step - 1]
    assert decisions(m) == decisions(serial(tmp_path, first_star_fails))


def test_the_journal_refuses_a_candidate_built_on_parents_that_were_not_committed(tmp_path):
    s, m = campaign(tmp_path, "guard")
    m.record_start(1, "star", 1, "uce", {})
    m.record_result(1, 1, GateDecision("commit", ("ok",)), None, _delta(m, 1, "star", 1, b"star"))
    m.commit(1, 1)
    m.record_start(2, "square", 1, "uce", {}, parents=("0" * 64,), speculative="parent")
    m.record_result(2, 1, GateDecision("commit", ("ok",)), None, _delta(m, 2, "square", 1, b"square"))
    with pytest.raises(CommitError, match="not the committed"):
        m.commit(2, 1)


def _delta(m: Manifest, step: int, concept: str, attempt: int, payload: bytes) -> DeltaRef:
    out = m.attempt_path(step, concept, attempt)
    out.mkdir(parents=True, exist_ok=True)
    (out / "delta.safetensors").write_bytes(payload)
    return DeltaRef(str(out / "delta.safetensors"), hashlib.sha256(payload).hexdigest())


def test_parallel_attempts_commit_the_lowest_passing_attempt(tmp_path):
    # star: uce fails twice, esd-x passes at any strength. With 3 in flight after the first rejection,
    # attempts 2 (uce x2), 3 (esd-x) and 4 (esd-x x2) run at once; 4 finishes first, yet 3 commits.
    def verdict(concept, method, hparams):
        return "forgetting" if concept == "star" and method == "uce" else "pass"
    overrides = ("concepts=[star]", "retry.max_attempts=4")
    outcome, m, _ = piped(tmp_path, verdict, *overrides, speculative=False, parallel=3)
    assert outcome.committed == ("star",)
    (commit,) = m.history.commits
    assert commit.attempt == 3
    fourth = next(a for a in m.history.attempts_for(1) if a.attempt == 4)
    assert fourth.status == DISCARDED and fourth.speculative == "retry" and fourth.decision.committed
    assert decisions(m) == decisions(serial(tmp_path, verdict, *overrides))


def test_a_parallel_attempt_the_policy_would_not_choose_is_discarded_and_rerun(tmp_path):
    # esd-x's first try over-erases (retain): the policy then divides its strength, but the attempt run
    # ahead assumed another under-erasure and multiplied it; it is discarded and the right one runs.
    def verdict(concept, method, hparams):
        if method == "uce":
            return "forgetting"
        return "retain" if not hparams else ("pass" if hparams["eta"] < 1 else "retain")
    overrides = ("concepts=[star]", "retry.max_attempts=4")
    outcome, m, _ = piped(tmp_path, verdict, *overrides, speculative=False, parallel=3,
                          pick=lambda tickets: tickets[0])
    assert outcome.committed == ("star",)
    dropped = [a for a in m.history.attempts_for(1) if a.status == DISCARDED]
    assert [a.attempt for a in dropped] == [4] and "retry policy" in dropped[0].discarded
    assert decisions(m) == decisions(serial(tmp_path, verdict, *overrides))


def test_a_serial_loop_resumes_a_pipelined_journal(tmp_path):
    # A pipelined run killed while a speculative attempt was in flight: the serial loop (or the pipelined
    # one) continues from the journal, discarding the attempt whose parent was never committed.
    outcome, m, _ = piped(tmp_path, first_star_fails)
    s, fresh = campaign(tmp_path, "resumed")
    history = m.history
    star1 = history.attempts_for(1)[0]
    fresh.record_start(1, "star", 1, "uce", {}, parents=(), speculative="")
    fresh.record_start(2, "square", 1, "uce", {}, parents=(star1.candidate.sha256,), speculative="parent")
    fresh.record_result(1, 1, star1.decision, star1.report, _delta(fresh, 1, "star", 1, b"x"))
    assert CampaignLoop(preflight(s, run=False), fresh, Scripted(first_star_fails)).run().status == "finished"
    square = fresh.history.attempts_for(2)
    assert square[0].status == DISCARDED and square[0].attempt == 1 and len(fresh.history.commits) == 3
    assert fresh.history.commit_for(2).attempt == 2


class Counting(Scripted):
    """Scripted, noting for each phase it starts how many steps the journal had committed by then."""

    def __init__(self, verdict, manifest: Manifest):
        super().__init__(verdict)
        self.manifest, self.started = manifest, []

    def submit(self, a, request, phase, candidate=None, watch=None):
        self.started.append((a.step, phase, len(self.manifest.history.commits)))
        return super().submit(a, request, phase, candidate, watch)


def deep(tmp_path: Path, verdict, depth: int = 2) -> tuple:
    """The pipelined loop `depth` steps ahead of the head, on four concepts (work ahead lands first)."""
    s, m = campaign(tmp_path, f"deep{depth}", "concepts=[star,square,round,cross]")
    executor = Counting(verdict, m)
    outcome = PipelinedLoop(preflight(s, run=False), m, executor, (), True, 1, depth=depth).run()
    return outcome, m, executor


def _built_on_committed(m: Manifest) -> None:
    shas = [c.delta.sha256 for c in sorted(m.history.commits, key=lambda c: c.step)]
    for c in m.history.commits:
        attempt = next(a for a in m.history.attempts_for(c.step) if a.attempt == c.attempt)
        assert list(attempt.parents) == shas[:c.step - 1]


def test_depth_two_erases_two_steps_ahead_on_the_chain_of_candidates(tmp_path):
    outcome, m, executor = deep(tmp_path, lambda *_: "pass")
    assert outcome.committed == ("star", "square", "round", "cross")
    # round's erase started on star's and square's candidates before either was committed, and was committed
    assert (3, "erase", 0) in executor.started
    rounds = m.history.attempts_for(3)
    assert len(rounds) == 1 and rounds[0].speculative == "parent" and len(rounds[0].parents) == 2
    _built_on_committed(m)
    # one step ahead, round waits for star's commit
    _, _, one = deep(tmp_path, lambda *_: "pass", depth=1)
    assert next(n for step, phase, n in one.started if (step, phase) == (3, "erase")) >= 1


def test_depth_two_discards_both_steps_built_on_a_rejected_candidate(tmp_path):
    outcome, m, _ = deep(tmp_path, first_star_fails)
    assert outcome.committed == ("star", "square", "round", "cross")
    h = m.history
    star1 = next(a for a in h.attempts_for(1) if a.attempt == 1)
    dropped = [a for a in h.attempts if a.status == DISCARDED]
    # square on star's rejected candidate, and round on that square: both built on it, both discarded
    assert {a.step for a in dropped} == {2, 3} and all(star1.candidate.sha256 in a.parents for a in dropped)
    _built_on_committed(m)
    s, ms = campaign(tmp_path, "deep-serial", "concepts=[star,square,round,cross]")
    assert CampaignLoop(preflight(s, run=False), ms, Scripted(first_star_fails)).run().status == "finished"
    assert decisions(m) == decisions(ms)


class Killed(Exception):
    pass


class DiesAt(Counting):
    """Counting, killed (the driver gone) at its n-th wait: whatever was in flight never lands."""

    def __init__(self, verdict, manifest: Manifest, n: int):
        super().__init__(verdict, manifest)
        self.n = n

    def wait(self, tickets):
        self.n -= 1
        if self.n == 0:
            raise Killed()
        return super().wait(tickets)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_depth_two_killed_anywhere_and_resumed_keeps_every_commit_and_the_serial_decisions(tmp_path, prefetch):
    s, ms = campaign(tmp_path, "serial4", "concepts=[star,square,round,cross]")
    assert CampaignLoop(preflight(s, run=False), ms, Scripted(first_star_fails)).run().status == "finished"
    n, speculating = 0, 0
    while True:   # a kill at every wait, until a run ends before its kill
        n += 1
        s, m = campaign(tmp_path / str(n), "deep", "concepts=[star,square,round,cross]")
        try:
            PipelinedLoop(preflight(s, run=False), m, DiesAt(first_star_fails, m, n), (), True, 1, depth=2,
                          prefetch=prefetch).run()
            break
        except Killed:
            speculating += any(a.speculative == "parent" and a.status == "started" for a in m.history.attempts)
        before = {(c.step, c.attempt, c.delta.sha256) for c in m.history.commits}
        again = Manifest.open(s.storage_path)
        outcome = PipelinedLoop(preflight(s, run=False), again, Scripted(first_star_fails), (), True, 1, depth=2,
                                prefetch=prefetch).run()
        assert outcome.committed == ("star", "square", "round", "cross")
        assert before <= {(c.step, c.attempt, c.delta.sha256) for c in again.history.commits}
        _built_on_committed(again)
        assert decisions(again) == decisions(ms)
    assert n > 10 and speculating > 3   # killed at each wait, several times with speculative attempts in flight


class Prefetching(Scripted):
    """Scripted, noting in order each submit and landing: (what, step, attempt, phase, erased_before)."""

    def __init__(self, verdict, pick, fail_baselines: bool = False):
        super().__init__(verdict, pick)
        self.fail_baselines, self.log = fail_baselines, []

    def submit(self, a, request, phase, candidate=None, watch=None):
        self.log.append(("submit", a.step, a.attempt, phase, tuple(request.erased_before)))
        return super().submit(a, request, phase, candidate, watch)

    def wait(self, tickets):
        ticket = self.pick(sorted(tickets))
        a, request, phase, _ = self.running[ticket]
        self.log.append(("landed", a.step, a.attempt, phase, tuple(request.erased_before)))
        return super().wait([ticket])

    def baseline(self, a, request) -> PhaseOutput:
        return PhaseOutput("baseline", None, "RuntimeError: no GPU", None, 0.0, "") if self.fail_baselines \
            else super().baseline(a, request)


def prefetched(tmp_path: Path, verdict, prefetch: int, pick, name: str, **kw) -> tuple:
    s, m = campaign(tmp_path, name, "concepts=[star,square,round,cross]")
    executor = Prefetching(verdict, pick, **kw)
    outcome = PipelinedLoop(preflight(s, run=False), m, executor, (), True, 3, prefetch=prefetch).run()
    return outcome, m, executor


def _serial4(tmp_path: Path, verdict) -> Manifest:
    s, ms = campaign(tmp_path, "serial-prefetch", "concepts=[star,square,round,cross]")
    assert CampaignLoop(preflight(s, run=False), ms, Scripted(verdict)).run().status == "finished"
    return ms


@pytest.mark.parametrize("pick", [lambda t: t[0], lambda t: t[-1]], ids=["oldest-first", "newest-first"])
def test_baselines_are_drawn_ahead_once_per_suite_and_each_gate_waits_for_its_own(tmp_path, pick):
    outcome, m, executor = prefetched(tmp_path, first_star_fails, 2, pick, "prefetch")
    assert outcome.committed == ("star", "square", "round", "cross")
    submits = [e for e in executor.log if e[0] == "submit"]
    baselines = [(step, erased) for _, step, _, phase, erased in submits if phase == "baseline"]
    # every step's suite once, each assuming the steps before it commit (none is skipped here)
    concepts = ("star", "square", "round", "cross")
    assert sorted(baselines) == [(k, concepts[:k - 1]) for k in range(1, 5)]
    # a step's first gate starts only once its baseline has landed (a gate never draws it a second time)
    for step in range(1, 5):
        gate = next(i for i, e in enumerate(executor.log) if e[0] == "submit" and e[1] == step and e[3] == "validate")
        assert ("landed", step, 0, "baseline", concepts[:step - 1]) in executor.log[:gate]
    assert decisions(m) == decisions(_serial4(tmp_path, first_star_fails))
    _built_on_committed(m)


def test_baselines_reach_only_prefetch_steps_past_the_head(tmp_path):
    _, _, executor = prefetched(tmp_path, lambda *_: "pass", 1, lambda t: t[0], "prefetch1")
    submits = [e for e in executor.log if e[0] == "submit"]
    first_gate = next(i for i, e in enumerate(submits) if e[3] == "validate")
    # before star's first gate only star's and square's baselines are asked for
    assert {e[1] for e in submits[:first_gate] if e[3] == "baseline"} == {1, 2}


def test_a_failed_baseline_costs_only_its_time_the_gates_draw_their_own(tmp_path):
    outcome, m, executor = prefetched(tmp_path, first_star_fails, 2, lambda t: t[0], "prefetch-fails",
                                      fail_baselines=True)
    assert outcome.committed == ("star", "square", "round", "cross")
    assert decisions(m) == decisions(_serial4(tmp_path, first_star_fails))


def test_a_skipped_concept_wastes_the_baselines_built_on_it_and_the_later_gates_still_run(tmp_path):
    def square_never(concept, method, hparams):
        return "forgetting" if concept == "square" else "pass"
    outcome, m, executor = prefetched(tmp_path, square_never, 3, lambda t: t[0], "prefetch-skip")
    assert outcome.committed == ("star", "round", "cross")
    # round's and cross's suites were drawn ahead with square among the erased, then again without it
    erased = {(e[1], e[4]) for e in executor.log if e[0] == "submit" and e[3] == "baseline"}
    assert (3, ("star", "square")) in erased
    assert decisions(m) == decisions(_serial4(tmp_path, square_never))


def test_steps_auto_pipelined_runs_nothing_for_the_members_of_a_committed_group_step(tmp_path):
    s, m = campaign(tmp_path, "auto", "concepts=[red star,green star,square]", "steps=auto")
    executor = Prefetching(lambda *_: "pass", lambda t: t[0])
    outcome = PipelinedLoop(preflight(s, run=False), m, executor, (), True, 3, prefetch=3).run()
    assert outcome.committed == ("red star", "green star", "square")
    assert [(o.step, o.outcome) for o in m.history.outcomes if o.outcome != "committed"] == [(2, "covered"),
                                                                                         (3, "covered")]
    # no erase, gate, speculation or baseline for steps 2 and 3 (the members the group step erased)
    assert {e[1] for e in executor.log if e[0] == "submit"} == {1, 4}


def test_steps_auto_pipelined_reaches_the_serial_decisions_when_the_group_step_is_refused(tmp_path):
    def group_never(concept, method, hparams):
        return "forgetting" if "+" in concept else "pass"
    runs = []
    for name, loop in (("auto-serial", None), ("auto-piped", PipelinedLoop)):
        s, m = campaign(tmp_path, name, "concepts=[red star,green star,square]", "steps=auto")
        settled, executor = preflight(s, run=False), Scripted(group_never)
        outcome = loop(settled, m, executor, (), True, 3).run() if loop else CampaignLoop(settled, m, executor).run()
        runs.append((outcome.committed, decisions(m)))
    assert runs[0] == runs[1] and runs[0][0] == ("red star", "green star", "square")
