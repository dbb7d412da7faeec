"""A driver SIGKILLed mid-campaign, then `erase resume`: commits kept byte-identical, none recomputed.

The driver is a real `erase run` process with its own embedded Ray (which dies with it).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.manifest import Manifest, sha256_file
from tests.fixtures.drivers import attempts, commits, kill_when, resume

pytestmark = pytest.mark.ray


def erase_phases(log: Path) -> int:
    return log.read_text().count("--- erase phase") if log.exists() else 0


def test_killed_driver_resumes_without_redoing_commits(campaign):
    spec, path = campaign("crashdriver", ["star", "square", "round"])
    storage = Path(spec.storage_path)
    kill_when(path, storage, commits, "a commit")

    before = Manifest.open(storage).history
    kept = {c.step: c for c in before.commits}
    assert 1 <= len(kept) < 3, "the kill must land between the first commit and the end"
    kept_files = {step: sha256_file(storage / c.delta.path) for step, c in kept.items()}

    out = resume(storage)

    after = Manifest.open(storage).history
    assert after.status == "finished" and len(after.commits) == 3
    for step, commit in kept.items():
        again = after.commit_for(step)
        assert again == commit                                        # the same record, untouched
        assert sha256_file(storage / again.delta.path) == kept_files[step] == commit.delta.sha256
        # Not recomputed: one attempt, never restarted, and its worker ran the erase phase once.
        (attempt,) = after.attempts_for(step)
        assert attempt.restarts == 0 and attempt == next(a for a in before.attempts if a.step == step)
        assert erase_phases(storage / Path(commit.delta.path).parent / "erase.log") == 1
    # Erase phases run, against what the attempt records account for: one per attempt, plus one per
    # redo of a killed attempt (fewer if the kill came before the killed attempt's phase began).
    logged = sum(erase_phases(p) for p in storage.glob("steps/*/attempt-*/erase.log"))
    assert len(after.attempts) <= logged <= sum(1 + a.restarts for a in after.attempts)
    assert "committed" in out and "finished" in out


def test_killed_during_speculation_resume_keeps_every_commit(campaign):
    """The pipelined loop killed while the next concept is erased on a candidate not yet committed."""
    spec, path = campaign("crashspec", ["star", "square", "round"],
                          resources={"speculative": True, "parallel_attempts": 2})
    storage = Path(spec.storage_path)
    kill_when(path, storage, lambda st: any(a.get("speculative") == "parent" and a["status"] == "started"
                                            for a in attempts(st)), "a speculative attempt")
    kept = {c.step: c for c in Manifest.open(storage).history.commits}

    resume(storage)

    after = Manifest.open(storage).history
    assert after.status == "finished" and len(after.commits) == 3
    assert all(after.commit_for(step) == commit for step, commit in kept.items())
    shas = [c.delta.sha256 for c in sorted(after.commits, key=lambda c: c.step)]
    for c in after.commits:   # each committed delta was trained on exactly the committed bytes before it
        attempt = next(a for a in after.attempts_for(c.step) if a.attempt == c.attempt)
        assert attempt.status == "finished" and list(attempt.parents) == shas[:c.step - 1]
        assert sha256_file(storage / c.delta.path) == c.delta.sha256


def test_killed_during_its_gate_resume_does_not_erase_again(campaign):
    """A driver SIGKILLed while step 1's gate runs: the erase phase's end is journaled with its delta's sha256,
    so `erase resume` validates that delta and commits it without running the erase again."""
    spec, path = campaign("gatekill", ["star"])
    storage = Path(spec.storage_path)
    kill_when(path, storage, lambda st: any(a["status"] == "started" and a.get("erased") for a in attempts(st)),
              "a finished erase")
    (killed,) = Manifest.open(storage).history.attempts
    assert killed.status == "started" and killed.erases == 1

    out = resume(storage)
    after = Manifest.open(storage).history
    (attempt,) = after.attempts
    assert after.status == "finished" and attempt.restarts == 1
    assert attempt.erases == 1                                           # counted in the journal
    assert after.commit_for(1).delta == killed.erased                    # the delta erased before the kill
    assert erase_phases(storage / Path(killed.erased.path).parent / "erase.log") == 1
    assert "resuming at the gate" in out, out
