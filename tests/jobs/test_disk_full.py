"""The disk filling while a delta is written: nothing half-written under its final name, one readable line, and
the campaign goes on once space is back.

The full disk is a file-size limit (RLIMIT_FSIZE) on a child process running the real erase phase of a toy UCE
step: the delta (about 180 KB) cannot be written past the limit, while the small files before it (request.json,
erase_stats.json, progress.jsonl) fit. SIGXFSZ is ignored in the child, so the write fails with EFBIG ("File too
large") as a write to a full disk fails with ENOSPC, instead of killing the process. Where this process may mount
a small tmpfs (root), the last test fills a real filesystem (ENOSPC) under a delta and a journal write.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.deltas.delta import load_delta
from erasecore.codec import from_json, to_json
from erasecore.contracts import (
    DeltaRef,
    Estimate,
    GateReport,
    ParallelSpec,
    StepRequest,
    ValidationSpec,
)
from erasecore.errors import CommitError
from orchestrator.gate import GateDecision
from orchestrator.loop import CampaignLoop, PhaseOutput
from orchestrator.manifest import MANIFEST, Manifest
from orchestrator.preflight import preflight
from orchestrator.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
LIMIT = 32 * 1024   # bytes any one file of the child may reach: the delta does not fit
TOO_LARGE = os.strerror(errno.EFBIG)   # "File too large"

# python -c LIMITED <limit> -m <module> <args...> (or -c <code> <args...>): run that as `python` would, with every
# file it writes capped at <limit> bytes (0: no cap), SIGXFSZ ignored so that a write past the cap fails with EFBIG.
LIMITED = r"""
import resource, runpy, signal, sys
limit, kind, what = int(sys.argv[1]), sys.argv[2], sys.argv[3]
if limit:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.argv = [what, *sys.argv[4:]]
if kind == "-m":
    runpy.run_module(what, run_name="__main__", alter_sys=True)
else:
    exec(compile(what, "<child>", "exec"), {"__name__": "__main__"})
"""

# The Ray task's erase phase (orchestrator/ray/tasks.py erase_phase: the phase's error caught and made one line)
# without Ray: only the placement, which asks Ray's runtime, is filled in. Prints the PhaseOutput as JSON.
PHASE = r"""
import json, os, sys
from erasecore.codec import from_json, to_json
from erasecore.contracts import StepRequest
from orchestrator.loop import Placement
from orchestrator.ray import tasks
tasks._placement = lambda: Placement("local", "test", os.getpid(), (), "")
out = tasks.erase_phase(from_json(StepRequest, open(sys.argv[1]).read()))
print("PHASE " + json.dumps({"error": out.error, "value": json.loads(to_json(out.value)) if out.value else None,
                             "log": out.log}))
"""


def limited(limit: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LIMITED, str(limit), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False)


def leftovers(out: Path) -> list[str]:
    """delta.safetensors or a temp file of it in `out`."""
    return sorted(p.name for p in out.iterdir() if "delta.safetensors" in p.name)


def toy_request(out: Path, attempt: int = 1) -> StepRequest:
    return StepRequest(campaign="diskfull", step=1, attempt=attempt, concept="star", method="uce", hparams={},
                       model="toyworld", parents=(), out_dir=str(out), validation=ValidationSpec(judge="toyworld"),
                       parallel=ParallelSpec(num_workers=1))


def test_erase_step_on_a_full_disk_fails_in_one_line_and_the_redo_writes_the_delta(tmp_path):
    out = tmp_path / "steps" / "1-star" / "attempt-1"
    request = toy_request(out)
    path = tmp_path / "request.json"
    path.write_text(to_json(request))

    full = limited(LIMIT, "-m", "launch.cli", "step", str(path))
    shown = full.stdout + full.stderr
    assert full.returncode == 2, shown
    assert "Traceback" not in shown, shown
    errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and full.stderr.endswith(errors[0] + "\n"), shown   # one line, the last said
    assert str(out / "delta.safetensors") in errors[0] and TOO_LARGE in errors[0], errors[0]
    assert leftovers(out) == []   # no half-written delta under its name, and no temp file of it
    end = json.loads((out / "progress.jsonl").read_text().splitlines()[-1])
    assert end["stage"] == "end" and end["ok"] is False and TOO_LARGE in end["note"]

    # Space is back: the same request, in the same attempt directory, writes the whole delta.
    from jobs.step import run_erase
    ref = run_erase(request, log=lambda *_: None)
    assert ref.path == str(out / "delta.safetensors") and leftovers(out) == ["delta.safetensors"]
    tensors, meta = load_delta(ref.path, ref.sha256)
    assert tensors and meta.method == "uce" and meta.concept == "star"


def passing_report(concept: str) -> GateReport:
    good = Estimate(0.99, 0.95, 1.0, 96)
    return GateReport(concept=concept, forgetting=Estimate(0.97, 0.92, 0.99, 96),
                      target_acc=Estimate(0.03, 0.01, 0.07, 96), base_target_acc=0.9, evasion={}, retain=good,
                      retain_by_distance={}, leakage=Estimate(0.0, 0.0, 0.04, 96), kl=0.0, kl_base_noise=0.0,
                      cumulative={},
                      images_generated=96, early_stopped=False, seconds=0.1, drift=Estimate(0.0, 0.0, 0.04, 96))


class FullThenFreeDisk:
    """The loop's executor: each erase is the real erase phase, the first in a child process on a full disk, the
    next here with space back; the gate passes any candidate (what it measures is not the subject here)."""

    def __init__(self, tmp: Path, monkeypatch):
        self.tmp, self.erases = tmp, 0
        from orchestrator.loop import Placement
        from orchestrator.ray import tasks
        monkeypatch.setattr(tasks, "_placement", lambda: Placement("local", "test", os.getpid(), (), ""))
        self.erase_phase = tasks.erase_phase

    def erase(self, a, request, watch=None) -> PhaseOutput:
        self.erases += 1
        if self.erases > 1:
            return self.erase_phase(request)
        path = self.tmp / f"request-{a.attempt}.json"
        path.write_text(to_json(request))
        done = limited(LIMIT, "-c", PHASE, str(path))
        assert done.returncode == 0, done.stdout + done.stderr   # a failed phase is an output, never a crash
        (line,) = [line for line in done.stdout.splitlines() if line.startswith("PHASE ")]
        result = json.loads(line.removeprefix("PHASE "))
        value = from_json(DeltaRef, json.dumps(result["value"])) if result["value"] else None
        return PhaseOutput("erase", value, result["error"], None, 0.0, result["log"])

    def validate(self, a, request, candidate, watch=None) -> PhaseOutput:
        return PhaseOutput("validate", passing_report(a.concept), "", None, 0.0, "")


def test_a_full_disk_is_a_failed_attempt_in_one_journal_line_and_the_retry_commits(tmp_path, monkeypatch):
    spec = load_spec(None, ["name=diskfull", "model=toyworld", "method=uce", "concepts=[star]",
                            f"storage_path={tmp_path / 'run'}", "retry.max_attempts=2", "tracking.mode=disabled"])
    manifest = Manifest.create(spec.storage_path, spec)
    executor = FullThenFreeDisk(tmp_path, monkeypatch)
    outcome = CampaignLoop(preflight(spec, run=False), manifest, executor).run()

    assert outcome.status == "finished" and executor.erases == 2
    history = Manifest.open(spec.storage_path).history
    first, second = history.attempts_for(1)
    # The full disk: a failed attempt, its reason one readable line naming the file and the cause.
    assert first.status == "finished" and not first.decision.committed and first.decision.failed == ("error",)
    (reason,) = first.decision.reasons
    first_dir = manifest.attempt_path(1, "star", 1)
    assert "\n" not in reason and reason.startswith("step failed: erase: ")
    assert str(first_dir / "delta.safetensors") in reason and TOO_LARGE in reason, reason
    assert first.candidate is None and leftovers(first_dir) == []
    # Space back: the retry wrote its delta and the campaign committed it, once.
    assert second.decision.committed
    assert [(c.step, c.attempt) for c in history.commits] == [(1, 2)]
    (commit,) = history.commits
    assert hashlib.sha256((Path(spec.storage_path) / commit.delta.path).read_bytes()).hexdigest() == commit.delta.sha256
    load_delta(Path(spec.storage_path) / commit.delta.path, commit.delta.sha256)


def test_the_journal_write_on_a_full_disk_keeps_the_old_journal(tmp_path):
    """manifest.json rewritten under a cap smaller than the new journal: the old one stays whole, no temp file is
    left, and once the cap is lifted the same commit goes through."""
    spec = load_spec(None, ["name=diskfull", "concepts=[star]", f"storage_path={tmp_path / 'run'}"])
    m = Manifest.create(spec.storage_path, spec)
    m.record_start(1, "star", 1, "uce", {})
    directory = m.attempt_path(1, "star", 1)
    directory.mkdir(parents=True)
    payload = b"delta bytes" * 10
    (directory / "delta.safetensors").write_bytes(payload)
    m.record_result(1, 1, GateDecision("commit", ("ok",)), passing_report("star"),
                    DeltaRef(str(directory / "delta.safetensors"), hashlib.sha256(payload).hexdigest()))
    old = (m.path).read_bytes()
    commit = f"from orchestrator.manifest import Manifest; Manifest.open({str(m.root)!r}).commit(1, 1)"
    cap = len(old) + 64   # the old journal fits, the journal with a commit does not
    full = limited(cap, "-c", commit)
    assert full.returncode != 0 and TOO_LARGE in full.stderr, full.stderr
    assert m.path.read_bytes() == old
    assert sorted(p.name for p in m.root.iterdir() if p.name.startswith(f".{MANIFEST}")) == []
    assert Manifest.open(m.root).history.commits == ()

    again = Manifest.open(m.root)   # space is back
    again.commit(1, 1)
    assert len(Manifest.open(m.root).history.commits) == 1
    with pytest.raises(CommitError, match="already committed"):
        Manifest.open(m.root).commit(1, 1)



# ---- a really full filesystem (ENOSPC), where this process may mount a small tmpfs ----------------------------

@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs mounted under tmp_path; skipped where this process may not mount one (not root, a sandbox)."""
    where = tmp_path / "tiny"
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)], capture_output=True,
                             text=True, check=False)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of `disk` with one file; return it (delete it to free the space again)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass   # ENOSPC: full
    finally:
        os.close(fd)
    return filler


def test_a_full_filesystem_leaves_no_delta_and_keeps_the_journal(tiny_disk):
    import torch

    from jobs.deltas.delta import DeltaError, DeltaMeta, save_delta

    spec = load_spec(None, ["name=diskfull", "concepts=[star]", f"storage_path={tiny_disk / 'run'}"])
    m = Manifest.create(spec.storage_path, spec)
    m.record_start(1, "star", 1, "uce", {})
    directory = m.attempt_path(1, "star", 1)
    tensors, meta = {"unet.w": torch.arange(4096, dtype=torch.float32)}, DeltaMeta("dense", "uce", "star")
    filler = fill(tiny_disk)

    with pytest.raises(DeltaError) as err:
        save_delta(tensors, meta, directory / "delta.safetensors")
    line = str(err.value)
    assert "\n" not in line and str(directory / "delta.safetensors") in line and os.strerror(errno.ENOSPC) in line, line
    assert not directory.exists() or leftovers(directory) == []
    old = m.path.read_bytes()
    with pytest.raises(OSError):   # the journal cannot be rewritten either: the old one stays whole
        m.record_result(1, 1, GateDecision("reject", ("step failed: erase: " + line,), ("error",)))
    assert m.path.read_bytes() == old and Manifest.open(m.root).history.attempts[0].status == "started"
    assert [p.name for p in m.root.iterdir() if p.name.startswith(f".{MANIFEST}")] == []

    filler.unlink()   # space is back: the same attempt is redone and committed
    ref = save_delta(tensors, meta, directory / "delta.safetensors")
    m.record_result(1, 1, GateDecision("commit", ("ok",)), passing_report("star"), ref)
    m.commit(1, 1)
    assert [(c.step, c.attempt) for c in Manifest.open(m.root).history.commits] == [(1, 1)]
