"""The journal: atomic rewrites, exactly-once commits, verified deltas, one-line errors."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import pytest

from erasecore.contracts import DeltaRef, Estimate, GateReport
from erasecore.errors import CommitError, ManifestError, SpecMismatchError
from orchestrator.gate import GateDecision
from orchestrator.manifest import MANIFEST, Manifest, attempt_dir, slug
from orchestrator.spec import load_spec

ACCEPT = GateDecision("commit", ("forgetting 0.97 >= 0.90",))
REJECT = GateDecision("reject", ("forgetting 0.62 < 0.90",), ("forgetting",))


def spec(*overrides: str):
    return load_spec(None, ["name=toy", "concepts=[star,square,round]", *overrides])


def report() -> GateReport:
    e = Estimate(0.97, 0.93, 0.99, 96)
    return GateReport(concept="star", forgetting=e, target_acc=Estimate(0.03, 0.01, 0.07, 96), base_target_acc=0.9,
                      evasion={}, retain=e, retain_by_distance={}, leakage=Estimate(0.0, 0.0, 0.04, 96), kl=0.05,
                      kl_base_noise=0.02, cumulative={"square": Estimate(0.1, 0.05, 0.2, 48)},
                      images_generated=400, early_stopped=True, seconds=3.0)


def candidate(m: Manifest, step: int, concept: str, attempt: int, payload: bytes = b"delta") -> DeltaRef:
    """Write a candidate delta the way a worker does; return its absolute ref."""
    directory = m.attempt_path(step, concept, attempt)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "delta.safetensors"
    path.write_bytes(payload)
    return DeltaRef(str(path.resolve()), hashlib.sha256(payload).hexdigest())


def accepted(m: Manifest, step: int = 1, concept: str = "star", attempt: int = 1) -> DeltaRef:
    m.record_start(step, concept, attempt, "uce", {"erase_scale": 1.0}, host="w1")
    ref = candidate(m, step, concept, attempt)
    m.record_result(step, attempt, ACCEPT, report(), ref)
    return ref


def test_create_writes_journal_and_spec_snapshot(tmp_path):
    m = Manifest.create(tmp_path / "run", spec())
    assert (tmp_path / "run" / MANIFEST).is_file()
    assert "concepts:\n- star" in (tmp_path / "run" / "spec.yaml").read_text()
    again = Manifest.open(tmp_path / "run")
    assert (again.campaign, again.status, again.spec_hash) == ("toy", "running", m.spec_hash)
    assert again.history.attempts == () and again.committed_deltas() == ()


def test_create_on_the_same_spec_resumes_the_journal(tmp_path):
    m = Manifest.create(tmp_path, spec())
    accepted(m)
    resumed = Manifest.create(tmp_path, spec("tracking.mode=disabled"))   # operational change only
    assert len(resumed.history.attempts) == 1


def test_create_refuses_a_different_spec_unless_allowed(tmp_path):
    m = Manifest.create(tmp_path, spec())
    with pytest.raises(SpecMismatchError) as err:
        Manifest.create(tmp_path, spec("retry.max_attempts=5"))
    assert "another spec" in str(err.value) and "\n" not in str(err.value)
    changed = Manifest.create(tmp_path, spec("retry.max_attempts=5"), allow_spec_change=True)
    assert changed.spec_hash != m.spec_hash
    doc = json.loads((tmp_path / MANIFEST).read_text())
    assert m.spec_hash in doc["earlier_specs"] and "max_attempts: 5" in (tmp_path / "spec.yaml").read_text()


def test_open_missing_or_corrupt_is_one_line(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        Manifest.open(tmp_path / "nothing")
    (tmp_path / MANIFEST).write_text('{"format": 1, "campaign": "toy", "stat')
    with pytest.raises(ManifestError) as err:
        Manifest.open(tmp_path)
    assert str(err.value).startswith("corrupt manifest") and "\n" not in str(err.value)
    (tmp_path / MANIFEST).write_text('{"format": 1, "campaign": "toy", "status": "running"}')
    with pytest.raises(ManifestError, match="corrupt manifest.*spec_hash"):
        Manifest.open(tmp_path)
    (tmp_path / MANIFEST).write_text("[1, 2]")
    with pytest.raises(ManifestError, match="corrupt manifest"):
        Manifest.open(tmp_path)


def test_a_crash_before_the_rename_leaves_the_previous_journal(tmp_path, monkeypatch):
    m = Manifest.create(tmp_path, spec())
    accepted(m)
    before = (tmp_path / MANIFEST).read_bytes()

    def crash(src, dst):
        raise OSError("power lost")   # the temp file was written and fsynced, the rename never happened

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power lost"):
        m.commit(1, 1)
    monkeypatch.undo()
    assert (tmp_path / MANIFEST).read_bytes() == before
    assert Manifest.open(tmp_path).history.commits == ()
    assert m.history.commits == ()   # the object still matches the disk
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    m.commit(1, 1)                   # and the commit can be made once the disk is back
    assert len(Manifest.open(tmp_path).history.commits) == 1


def test_a_leftover_temp_file_is_ignored(tmp_path):
    Manifest.create(tmp_path, spec())
    (tmp_path / f".{MANIFEST}.999.tmp").write_text("{half a jour")
    assert Manifest.open(tmp_path).status == "running"


def test_commit_is_exactly_once_and_recorded_relative(tmp_path):
    m = Manifest.create(tmp_path / "run", spec())
    ref = accepted(m)
    record = m.commit(1, 1)
    assert record.delta == DeltaRef("steps/1-star/attempt-1/delta.safetensors", ref.sha256)
    assert record.metrics["forgetting"] == 0.97 and record.metrics["cumulative:square"] == 0.1
    assert record.spec_hash == m.spec_hash
    with pytest.raises(CommitError, match="already committed"):
        m.commit(1, 1)
    with pytest.raises(CommitError, match="already committed"):
        Manifest.open(tmp_path / "run").commit(1, 1)
    outcome = Manifest.open(tmp_path / "run").history.outcome_for(1)
    assert outcome.outcome == "committed"
    assert m.committed_deltas() == (DeltaRef(str(tmp_path / "run" / record.delta.path), ref.sha256),)


def test_commit_refuses_a_delta_whose_hash_differs(tmp_path):
    m = Manifest.create(tmp_path, spec())
    ref = accepted(m)
    with open(ref.path, "ab") as f:
        f.write(b"bit rot")
    with pytest.raises(CommitError, match="sha256"):
        m.commit(1, 1)
    os.remove(ref.path)
    with pytest.raises(CommitError, match="does not exist"):
        m.commit(1, 1)
    assert Manifest.open(tmp_path).history.commits == ()


def test_commit_refuses_rejected_unfinished_or_outside_deltas(tmp_path):
    m = Manifest.create(tmp_path / "run", spec())
    m.record_start(1, "star", 1, "uce", {})
    with pytest.raises(CommitError, match="not accepted"):
        m.commit(1, 1)   # still running
    m.record_result(1, 1, REJECT, report(), candidate(m, 1, "star", 1))
    with pytest.raises(CommitError, match="not accepted"):
        m.commit(1, 1)
    m.record_start(1, "star", 2, "uce", {"erase_scale": 2.0})
    outside = tmp_path / "elsewhere.safetensors"
    outside.write_bytes(b"x")
    with pytest.raises(CommitError, match="outside"):
        m.record_result(1, 2, ACCEPT, report(), DeltaRef(str(outside), "0" * 64))


def test_a_started_attempt_can_be_redone_with_the_same_settings_only(tmp_path):
    m = Manifest.create(tmp_path, spec())
    m.record_start(1, "star", 1, "uce", {"erase_scale": 1.0}, host="w1")
    redo = m.record_start(1, "star", 1, "uce", {"erase_scale": 1.0}, host="w2")
    assert (redo.restarts, redo.host, redo.status) == (1, "w2", "started")
    assert len(Manifest.open(tmp_path).history.attempts) == 1
    with pytest.raises(ManifestError, match="other settings"):
        m.record_start(1, "star", 1, "uce", {"erase_scale": 4.0})
    m.record_result(1, 1, REJECT, report())
    with pytest.raises(ManifestError, match="already finished"):
        m.record_start(1, "star", 1, "uce", {"erase_scale": 1.0})
    with pytest.raises(ManifestError, match="not a started attempt"):
        m.record_result(1, 1, REJECT)


def test_results_round_trip_as_typed_records(tmp_path):
    m = Manifest.create(tmp_path, spec())
    accepted(m)
    a = Manifest.open(tmp_path).history.attempts_for(1)[0]
    assert a.report == report() and a.decision == ACCEPT
    assert a.candidate.path == "steps/1-star/attempt-1/delta.safetensors"
    assert a.status == "finished" and a.finished_at and a.host == "w1"


def test_skip_and_status(tmp_path):
    m = Manifest.create(tmp_path, spec())
    m.skip(2, "square", "all 3 attempts rejected")
    with pytest.raises(ManifestError, match="already skipped"):
        m.skip(2, "square", "again")
    with pytest.raises(ManifestError, match="already skipped"):
        m.record_start(2, "square", 4, "uce", {})
    m.set_status("halted")
    assert Manifest.open(tmp_path).status == "halted"
    with pytest.raises(ValueError):
        m.set_status("paused")


def test_garbage_is_every_attempt_dir_no_commit_or_live_attempt_owns(tmp_path):
    m = Manifest.create(tmp_path, spec())
    m.record_start(1, "star", 1, "uce", {})
    m.record_result(1, 1, REJECT, report(), candidate(m, 1, "star", 1))
    accepted(m, 1, "star", 2)
    m.commit(1, 2)
    m.record_start(2, "square", 1, "uce", {})          # a worker may be writing here right now
    candidate(m, 2, "square", 1)
    stray = m.attempt_path(3, "round", 7)              # written, never journaled
    stray.mkdir(parents=True)
    assert m.garbage() == [tmp_path / "steps/1-star/attempt-1", stray]


def test_paths_and_slugs():
    assert attempt_dir(3, "Van Gogh", 2).as_posix() == "steps/3-van-gogh/attempt-2"
    assert slug("!!!") == "concept"


def test_journal_is_plain_json_with_the_documented_keys(tmp_path):
    m = Manifest.create(tmp_path, spec())
    accepted(m)
    m.commit(1, 1)
    doc = json.loads((tmp_path / MANIFEST).read_text())
    assert {"format", "campaign", "spec_hash", "spec_yaml", "earlier_specs", "status", "created_at", "updated_at",
            "attempts", "commits", "outcomes"} <= set(doc)
    assert doc["commits"][0]["delta"]["path"] == "steps/1-star/attempt-1/delta.safetensors"
    assert doc["attempts"][0]["decision"] == {"verdict": "commit", "reasons": list(ACCEPT.reasons), "failed": []}
    assert doc["attempts"][0]["report"]["forgetting"] == dataclasses.asdict(report().forgetting)


def test_a_stopped_driver_is_journaled_with_its_one_line_reason(tmp_path):
    m = Manifest.create(tmp_path, spec())
    m.set_status("stopped", "the erase phase of step 1 (star) asks for 1 CPU, 4 GPU\n  but no node has that much")
    again = Manifest.open(tmp_path)
    reason = "the erase phase of step 1 (star) asks for 1 CPU, 4 GPU but no node has that much"
    assert (again.status, again.stop_reason, again.history.stop_reason) == ("stopped", reason, reason)
    assert json.loads((tmp_path / MANIFEST).read_text())["stop_reason"] == reason
    m.set_status("running")   # a resumed driver: the reason belongs to the stop it resumed from
    again = Manifest.open(tmp_path)
    assert (again.status, again.stop_reason, again.history.stop_reason) == ("running", "", "")
    assert "stop_reason" not in json.loads((tmp_path / MANIFEST).read_text())


@pytest.mark.parametrize("loop", ["serial", "pipelined"])
def test_a_stopped_campaign_resumes_running_and_redoes_its_started_attempt(tmp_path, loop):
    from orchestrator.loop import CampaignLoop, Callbacks
    from orchestrator.pipeline import PipelinedLoop
    from orchestrator.preflight import preflight
    from tests.unit.test_pipeline import Scripted

    s = load_spec(None, ["name=toy", "concepts=[star,square]", "ladder=[]", f"storage_path={tmp_path / 'run'}"])
    m = Manifest.create(s.storage_path, s)
    m.record_start(1, "star", 1, "uce", {})   # the driver stopped (no node could hold the step) during this one
    m.set_status("stopped", "no node can hold the erase phase")
    seen: list[tuple[int, str]] = []

    class Status(Callbacks):
        def attempt_started(self, a, request) -> None:
            seen.append((a.step, Manifest.open(s.storage_path).status))

    executor = Scripted(lambda concept, method, hparams: ACCEPT)
    settled = preflight(s, run=False)
    outcome = (CampaignLoop(settled, m, executor, [Status()]) if loop == "serial"
               else PipelinedLoop(settled, m, executor, [Status()], True, 1)).run()
    assert seen[0] == (1, "running")   # journaled running again before the redo, not still "stopped"
    assert outcome.status == "finished" and Manifest.open(s.storage_path).stop_reason == ""
    assert [a.restarts for a in m.history.attempts_for(1)] == [1]   # the started attempt redone, same number
