"""A redone attempt resumes at the phase that was interrupted: a journaled erase whose delta is on disk with its
sha256 goes straight to the gate; a complete gate report is taken as the gate; anything else runs again."""
from __future__ import annotations

import pytest

from erasecore.codec import to_json
from erasecore.contracts import GATE_REPORT
from orchestrator.loop import CampaignLoop, Callbacks
from orchestrator.manifest import DISCARDED, Manifest
from orchestrator.pipeline import PipelinedLoop
from orchestrator.preflight import preflight
from tests.unit.test_pipeline import DiesAt, Killed, Scripted, campaign, decisions, first_star_fails, report


class Phases(Scripted):
    """Scripted, counting the phases it runs as (step, attempt, phase); killed at the first `die_in` phase."""

    def __init__(self, verdict, die_in: str = ""):
        super().__init__(verdict)
        self.ran: list[tuple[int, int, str]] = []
        self.die_in = die_in

    def erase(self, a, request, watch=None):
        self.ran.append((a.step, a.attempt, "erase"))
        return super().erase(a, request, watch)

    def validate(self, a, request, candidate, watch=None):
        self.ran.append((a.step, a.attempt, "validate"))
        if self.die_in == "validate":
            raise Killed()
        return super().validate(a, request, candidate, watch)


class Events(Callbacks):
    def __init__(self):
        self.lines: list[str] = []

    def event(self, text: str) -> None:
        self.lines.append(text)


def killed_in_the_gate(tmp_path):
    """A serial run of star killed during its first gate: (spec, manifest)."""
    s, m = campaign(tmp_path, "gatekill", "concepts=[star]")
    with pytest.raises(Killed):
        CampaignLoop(preflight(s, run=False), m, Phases(lambda *_: "pass", die_in="validate")).run()
    return s, Manifest.open(s.storage_path)


def resume(s, m):
    executor, events = Phases(lambda *_: "pass"), Events()
    outcome = CampaignLoop(preflight(s, run=False), m, executor, [events]).run()
    return outcome, executor.ran, events.lines


def test_an_attempt_killed_in_its_gate_resumes_at_the_gate(tmp_path):
    s, m = killed_in_the_gate(tmp_path)
    (a,) = m.history.attempts
    assert a.status == "started" and a.erases == 1 and a.erased.path.endswith("attempt-1/delta.safetensors")
    outcome, ran, events = resume(s, m)
    assert outcome.committed == ("star",)
    assert ran == [(1, 1, "validate")]                       # the erase is not run again
    (done,) = m.history.attempts
    assert done.erases == 1 and done.restarts == 1 and m.history.commit_for(1).delta.sha256 == a.erased.sha256
    assert any("resuming at the gate" in line for line in events)


@pytest.mark.parametrize("damage", ["changed", "missing"])
def test_a_journaled_delta_changed_or_missing_on_disk_is_erased_again_and_the_log_says_why(tmp_path, damage):
    s, m = killed_in_the_gate(tmp_path)
    path = m.root / m.history.attempts[0].erased.path
    path.write_text("other bytes") if damage == "changed" else path.unlink()
    outcome, ran, events = resume(s, m)
    assert outcome.committed == ("star",) and ran == [(1, 1, "erase"), (1, 1, "validate")]
    assert m.history.attempts[0].erases == 2
    said = next(line for line in events if "erasing again" in line)
    assert ("expected" if damage == "changed" else "does not exist") in said and str(path) in said


def test_a_complete_gate_report_on_disk_is_the_gate_a_truncated_one_is_not(tmp_path):
    s, m = killed_in_the_gate(tmp_path)
    out = m.attempt_path(1, "star", 1)
    text = to_json(report("star", "forgetting"))              # the gate it finished said: reject
    (out / GATE_REPORT).write_text(text[: len(text) // 2])    # torn: not a report, the gate runs again
    _, ran, _ = resume(*killed_in_the_gate(tmp_path / "again"))
    assert ran == [(1, 1, "validate")]
    (out / GATE_REPORT).write_text(text)
    executor = Phases(lambda *_: "pass")
    CampaignLoop(preflight(s, run=False), m, executor).run()
    first = m.history.attempts_for(1)[0]
    assert executor.ran[0] == (1, 2, "erase")                 # attempt 1 was decided from its report alone
    assert first.decision.verdict == "reject" and first.report.forgetting.value == 0.62


def test_a_pipelined_run_killed_at_any_wait_never_redoes_a_finished_erase(tmp_path):
    s, ms = campaign(tmp_path, "serial3", "concepts=[star,square,round]")
    assert CampaignLoop(preflight(s, run=False), ms, Scripted(first_star_fails)).run().status == "finished"
    n, resumed_at_gate = 0, 0
    while True:
        n += 1
        s, m = campaign(tmp_path / str(n), "deep", "concepts=[star,square,round]")
        try:
            PipelinedLoop(preflight(s, run=False), m, DiesAt(first_star_fails, m, n), (), True, 2, depth=2).run()
            break
        except Killed:
            pass
        erased = {(a.step, a.attempt) for a in m.history.attempts if a.status == "started" and a.erases}
        again = Manifest.open(s.storage_path)
        executor = Phases(first_star_fails)
        executor.submit = _counting_submit(executor)
        PipelinedLoop(preflight(s, run=False), again, executor, (), True, 2, depth=2).run()
        assert not erased & {(step, attempt) for step, attempt, phase in executor.submitted if phase == "erase"}
        assert all(a.erases <= 1 for a in again.history.attempts)
        assert decisions(again) == decisions(ms)
        resumed_at_gate += bool(erased - {(a.step, a.attempt) for a in again.history.attempts if a.status == DISCARDED})
    assert n > 5 and resumed_at_gate >= 2


def _counting_submit(executor: Phases):
    executor.submitted = []
    plain = executor.submit

    def submit(a, request, phase, candidate=None, watch=None):
        executor.submitted.append((a.step, a.attempt, phase))
        return plain(a, request, phase, candidate, watch)
    return submit
