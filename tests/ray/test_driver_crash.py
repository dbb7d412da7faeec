"""A driver SIGKILLed mid-campaign, then `erase resume`: commits kept byte-identical, none recomputed.

The driver is a real `erase run` process with its own embedded Ray (which dies with it).
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.manifest import Manifest, sha256_file

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[2]


def erase(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "launch.cli", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def commits(storage: Path) -> list[dict]:
    try:
        return json.loads((storage / "manifest.json").read_text())["commits"]
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def erase_phases(log: Path) -> int:
    return log.read_text().count("--- erase phase") if log.exists() else 0


def test_killed_driver_resumes_without_redoing_commits(campaign):
    spec, path = campaign("crashdriver", ["star", "square", "round"])
    storage = Path(spec.storage_path)
    driver = erase("run", str(path), "--num-cpus", "2")
    deadline = time.monotonic() + 150
    while not commits(storage):
        assert driver.poll() is None, f"driver ended early:\n{driver.stdout.read()}"
        assert time.monotonic() < deadline, "no commit in time"
        time.sleep(0.1)
    driver.send_signal(signal.SIGKILL)
    driver.wait(30)
    driver.stdout.close()

    before = Manifest.open(storage).history
    kept = {c.step: c for c in before.commits}
    assert 1 <= len(kept) < 3, "the kill must land between the first commit and the end"
    kept_files = {step: sha256_file(storage / c.delta.path) for step, c in kept.items()}

    resumed = erase("resume", str(storage), "--num-cpus", "2")
    out, _ = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, out

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
    driver = erase("run", str(path), "--num-cpus", "2")
    deadline = time.monotonic() + 150
    while not any(a.get("speculative") == "parent" and a["status"] == "started" for a in attempts(storage)):
        assert driver.poll() is None, f"driver ended early:\n{driver.stdout.read()}"
        assert time.monotonic() < deadline, "no speculative attempt in time"
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait(30)
    driver.stdout.close()
    kept = {c.step: c for c in Manifest.open(storage).history.commits}

    resumed = erase("resume", str(storage), "--num-cpus", "2")
    out, _ = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, out

    after = Manifest.open(storage).history
    assert after.status == "finished" and len(after.commits) == 3
    assert all(after.commit_for(step) == commit for step, commit in kept.items())
    shas = [c.delta.sha256 for c in sorted(after.commits, key=lambda c: c.step)]
    for c in after.commits:   # each committed delta was trained on exactly the committed bytes before it
        attempt = next(a for a in after.attempts_for(c.step) if a.attempt == c.attempt)
        assert attempt.status == "finished" and list(attempt.parents) == shas[:c.step - 1]
        assert sha256_file(storage / c.delta.path) == c.delta.sha256


def attempts(storage: Path) -> list[dict]:
    try:
        return json.loads((storage / "manifest.json").read_text())["attempts"]
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def test_killed_during_its_gate_resume_does_not_erase_again(campaign):
    """A driver SIGKILLed while step 1's gate runs: the erase phase's end is journaled with its delta's sha256,
    so `erase resume` validates that delta and commits it without running the erase again."""
    spec, path = campaign("gatekill", ["star"])
    storage = Path(spec.storage_path)
    driver = erase("run", str(path), "--num-cpus", "2")
    deadline = time.monotonic() + 150
    while not any(a["status"] == "started" and a.get("erased") for a in attempts(storage)):
        assert driver.poll() is None, f"driver ended early:\n{driver.stdout.read()}"
        assert time.monotonic() < deadline, "no finished erase in time"
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait(30)
    driver.stdout.close()
    (killed,) = Manifest.open(storage).history.attempts
    assert killed.status == "started" and killed.erases == 1

    resumed = erase("resume", str(storage), "--num-cpus", "2")
    out, _ = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, out
    after = Manifest.open(storage).history
    (attempt,) = after.attempts
    assert after.status == "finished" and attempt.restarts == 1
    assert attempt.erases == 1                                           # counted in the journal
    assert after.commit_for(1).delta == killed.erased                    # the delta erased before the kill
    assert erase_phases(storage / Path(killed.erased.path).parent / "erase.log") == 1
    assert "resuming at the gate" in out, out
