"""`erase status` / `erase watch` on a journal with an attempt in flight: snapshot, rich view, CLI text."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.campaign import RunAttempt
from erasecore.contracts import DeltaRef
from erasecore.phase_progress import ProgressWriter
from orchestrator.live import LIVE_FILE, LiveStatus, snapshot
from orchestrator.manifest import Manifest
from orchestrator.outputs.live_view import render_text
from orchestrator.spec import load_spec
from tests.unit.test_campaign import ACCEPT, gate_report

REPO = Path(__file__).resolve().parents[2]
NOW = 1_000_000.0


@pytest.fixture
def running(tmp_path) -> tuple:
    """star committed (uce, 20 s erase + 30 s validate); square's ESD-x erase at step 12 of 30, 0.5 steps/s."""
    root = tmp_path / "toy"
    spec = load_spec(None, ["name=toy", "concepts=[star,square,round]", "ladder=[esd-x]", f"storage_path={root}"])
    m = Manifest.create(root, spec)
    m.record_start(1, "star", 1, "uce", {})
    (m.attempt_path(1, "star", 1)).mkdir(parents=True)
    (m.attempt_path(1, "star", 1) / "delta.safetensors").write_bytes(b"star")
    m.record_result(1, 1, ACCEPT, gate_report("star", ACCEPT),
                    DeltaRef(str(m.attempt_path(1, "star", 1) / "delta.safetensors"), hashlib.sha256(b"star").hexdigest()))
    m.commit(1, 1)
    (m.attempt_path(1, "star", 1) / "placement.json").write_text(json.dumps(
        {"erase": {"seconds": 20.0, "error": ""}, "validate": {"seconds": 30.0, "error": ""}}))
    m.record_start(2, "square", 1, "esd-x", {})
    out = m.attempt_path(2, "square", 1)
    out.mkdir(parents=True)
    clock = iter([NOW - 30.0] + [NOW - 24.0 + 2 * i for i in range(12)])
    progress = ProgressWriter(out, "erase", clock=lambda: next(clock))
    progress.write("start")
    for step in range(1, 13):
        progress.write("train", step=step, total=30, loss=0.5 / step, lr=5e-4, grad_norm=0.2, steps_per_s=0.5,
                       samples_per_s=8.0, peak_mem_mb=2048.0)
    live = LiveStatus(m, clock=lambda: NOW - 31.0)
    a = RunAttempt(2, "square", 1, "esd-x", {}, ("star",), ())
    live.attempt_started(a, None)
    live.phase_started(a, "erase", None)
    return spec, root


def test_the_snapshot_knows_the_running_phase_its_progress_and_what_is_left(running):
    spec, root = running
    snap = snapshot(spec, root, now=NOW)
    rows = {r.concept: r for r in snap.rows}
    assert rows["star"].state == "committed" and "forgetting 0.97" in rows["star"].metrics
    square = rows["square"]
    assert (square.state, square.phase, square.progress, square.fraction) == ("running", "erase", "12/30 steps", 0.4)
    assert square.left == pytest.approx(36.0)                 # 18 steps at 0.5 steps/s
    assert "loss 0.04167" in square.metrics and "mem 2.0G" in square.metrics
    # low: square's rest (36 s + a 30 s validation) + round's first UCE attempt (20 + 30 s)
    # high: + square's 2nd ESD-x attempt (ESD-x is unmeasured: this phase's pace, 30 s since its worker
    # started + 36 s, stands for it; + 30 s validation) and round's whole ladder within retry.max_attempts 3
    # (2 UCE, 1 ESD-x)
    assert snap.eta.low == pytest.approx(36 + 30 + 50)
    assert snap.eta.high == pytest.approx(36 + 30 + 96 + 2 * 50 + 96)
    assert snap.eta.text() == "1m56s to 5m58s"
    assert not snap.stale and snap.updated_ago == pytest.approx(31.0)


def test_the_view_shows_a_bar_the_progress_and_the_eta(running):
    spec, root = running
    text = render_text(snapshot(spec, root, now=NOW), width=160)
    square = next(line for line in text.splitlines() if "square" in line)
    assert "running" in square and "1 esd-x" in square and "erase" in square and "12/30 steps" in square
    assert "━" in square and "36s" in square and "loss 0.04167" in square
    assert "ETA 1m56s to 5m58s" in text and "driver updated 31s ago" in text


def test_a_finished_attempt_is_not_shown_as_running_even_if_live_json_says_so(running):
    spec, root = running
    Manifest.open(root).record_result(2, 1, ACCEPT, gate_report("square", ACCEPT), None)
    snap = snapshot(spec, root, now=NOW)
    assert snap.inflight is None and [r.state for r in snap.rows] == ["committed", "accepted", "pending"]


def test_a_silent_driver_is_pointed_out(running):
    spec, root = running
    snap = snapshot(spec, root, now=NOW + 3600)
    assert snap.stale and "silent for 1h00m" in render_text(snap)


def test_erase_status_prints_the_last_record_and_the_eta(running):
    _, root = running
    live = json.loads((root / LIVE_FILE).read_text())
    assert live["phase"] == "erase" and live["step"] == 2
    out = subprocess.run([sys.executable, "-m", "launch.cli", "status", str(root)], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "now: step 2 square attempt 1 esd-x erase: 12/30 steps (40%)  loss 0.04167" in out.stdout
    assert "ETA " in out.stdout and "warning: the driver has written nothing" in out.stdout   # NOW is long past
