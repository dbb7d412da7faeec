"""A commit killed mid-write: manifest.json is the old journal or the new one, never half of either.

A commit is one atomic rewrite of manifest.json (erasecore/atomic.py atomic_write: temp file,
flush, fsync, os.replace, fsync of the directory). Here a child process opens a real journal holding an
accepted attempt and commits it, and is SIGKILLed at one point of that write: once the temp file is
written and flushed (its fsync), just before the rename, or just after the rename (before the directory's
fsync). The parent then reads what is on disk, and a fresh process commits: exactly once in all.

What this catches: an atomic_write that writes manifest.json in place (or renames before the data is
on disk) leaves the new or a truncated journal at the "fsync" kill, not the old one; one that leaves a
stray temp file that Manifest.open reads, or that a later commit trips over, fails the fresh commit.
"""
from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from erasecore.contracts import DeltaRef, Estimate, GateReport
from erasecore.errors import CommitError
from orchestrator.gate import GateDecision
from orchestrator.manifest import MANIFEST, Manifest
from orchestrator.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
ACCEPT = GateDecision("commit", ("forgetting 0.97 >= 0.90",))

# The child: commit step 1 attempt 1 of the journal at argv[2], SIGKILLed at the point argv[1] names
# ("none": not killed). Exit 3 would mean the kill point was never reached.
CHILD = r"""
import os, signal, stat, sys
from pathlib import Path
from orchestrator import manifest as mf
from erasecore import atomic

point, root = sys.argv[1], sys.argv[2]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

real_fsync, real_replace = os.fsync, os.replace

def fsync(fd):   # the temp file's fsync: its bytes are written and flushed, nothing is renamed yet
    real_fsync(fd)
    if stat.S_ISREG(os.fstat(fd).st_mode):
        die()

def replace(src, dst, *args, **kwargs):   # the temp file is complete and on disk; the rename is next
    if Path(dst).name == mf.MANIFEST:
        die()
    return real_replace(src, dst, *args, **kwargs)

def fsync_dir(directory):   # the rename is done; the directory's fsync is next
    die()

m = mf.Manifest.open(root)   # opened before any patch: reading is not the subject here
if point == "fsync":
    os.fsync = fsync
elif point == "replace":
    os.replace = replace
elif point == "dirsync":
    atomic.fsync_dir = fsync_dir
m.commit(1, 1)
sys.exit(0 if point == "none" else 3)
"""


def child(point: str, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD, point, str(root)], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)


def report() -> GateReport:
    e = Estimate(0.97, 0.93, 0.99, 96)
    return GateReport(concept="star", forgetting=e, target_acc=Estimate(0.03, 0.01, 0.07, 96), base_target_acc=0.9,
                      evasion={}, retain=e, retain_by_distance={}, leakage=Estimate(0.0, 0.0, 0.04, 96), kl=0.05,
                      kl_base_noise=0.02, cumulative={}, images_generated=400, early_stopped=True, seconds=3.0)


@pytest.fixture
def journal(tmp_path) -> Path:
    """A campaign journal with step 1 attempt 1 finished and accepted by the gate, its delta on disk."""
    root = tmp_path / "run"
    m = Manifest.create(root, load_spec(None, ["name=toy", "concepts=[star,square]"]))
    m.record_start(1, "star", 1, "uce", {"erase_scale": 1.0}, host="w1")
    directory = m.attempt_path(1, "star", 1)
    directory.mkdir(parents=True)
    payload = b"not a real delta: the journal only hashes it" * 100
    (directory / "delta.safetensors").write_bytes(payload)
    ref = DeltaRef(str(directory / "delta.safetensors"), hashlib.sha256(payload).hexdigest())
    m.record_result(1, 1, ACCEPT, report(), ref)
    return root


def strays(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.name.startswith(f".{MANIFEST}.") and p.name.endswith(".tmp"))


def commit_once_more(root: Path) -> None:
    """A fresh process commits; then there is exactly one commit, and committing again is refused."""
    done = child("none", root)
    assert done.returncode == 0, done.stderr
    history = Manifest.open(root).history
    assert [(c.step, c.attempt) for c in history.commits] == [(1, 1)]
    assert [(o.step, o.outcome) for o in history.outcomes] == [(1, "committed")]
    with pytest.raises(CommitError, match="already committed"):
        Manifest.open(root).commit(1, 1)
    again = child("none", root)   # and from yet another process
    assert again.returncode != 0 and "already committed" in again.stderr
    assert len(Manifest.open(root).history.commits) == 1


@pytest.mark.parametrize("point", ["fsync", "replace"])
def test_kill_between_temp_write_and_rename_leaves_the_old_journal(journal, point):
    old = (journal / MANIFEST).read_bytes()
    killed = child(point, journal)
    assert killed.returncode == -signal.SIGKILL, f"the kill point {point!r} was not reached: {killed.stderr}"

    assert (journal / MANIFEST).read_bytes() == old   # byte for byte the journal before the commit
    opened = Manifest.open(journal)                   # parses, despite the stray temp file beside it
    assert opened.history.commits == () and opened.history.outcome_for(1) is None
    assert opened.history.attempts[0].status == "finished"
    (stray,) = strays(journal)   # the commit was written whole, only never renamed into place
    assert [c["attempt"] for c in json.loads(stray.read_text())["commits"]] == [1]

    commit_once_more(journal)


def test_kill_after_rename_before_dir_fsync_leaves_the_new_journal_complete(journal):
    killed = child("dirsync", journal)
    assert killed.returncode == -signal.SIGKILL, f"the directory fsync was not reached: {killed.stderr}"

    doc = json.loads((journal / MANIFEST).read_text())   # complete JSON, the commit in it
    assert [(c["step"], c["attempt"]) for c in doc["commits"]] == [(1, 1)]
    assert strays(journal) == []                          # the temp file became manifest.json
    history = Manifest.open(journal).history
    assert len(history.commits) == 1 and history.outcome_for(1).outcome == "committed"
    with pytest.raises(CommitError, match="already committed"):
        Manifest.open(journal).commit(1, 1)
    again = child("none", journal)
    assert again.returncode != 0 and "already committed" in again.stderr
    assert len(Manifest.open(journal).history.commits) == 1
