"""A toy ESD-x campaign on a local Ray, watched the three ways a user watches it: progress lines that arrive
while the erase phase runs, the attempt's W&B offline run with a loss point per logged step, and
`erase watch` drawing the running phase in a pseudo-terminal."""
from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from erasecore.phase_progress import current_run, read_records
from orchestrator.manifest import Manifest
from orchestrator.outputs.tracking import ENV_DIRS, run_id
from orchestrator.ray.driver import run_campaign
from tests.fixtures.wandb_records import history, run_file
from tests.ray.test_local_campaign import in_thread, joined

pytestmark = [pytest.mark.ray, pytest.mark.e2e, pytest.mark.slow, pytest.mark.usefixtures("local_ray")]
REPO = Path(__file__).resolve().parents[2]
STEPS = 30
ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07]*\x07|[()][A-Z0-9]|[=>78])")


def watch_in_a_terminal(root: Path, stop_after_s: float) -> tuple[str, int | None]:
    """`erase watch root` on a pseudo-terminal (160x40) until it exits; (what it drew, its exit status)."""
    master, slave = os.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "40"}
    child = subprocess.Popen([sys.executable, "-m", "launch.cli", "watch", str(root), "--interval", "0.3"],
                             cwd=REPO, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    drawn, deadline = bytearray(), time.monotonic() + stop_after_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:   # the child closed the terminal (it exited)
                    break
                if not chunk:
                    break
                drawn += chunk
            elif child.poll() is not None:
                break
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
        status = child.wait(30)
        os.close(master)
    return ANSI.sub("", drawn.decode("utf-8", "replace")), status


def test_progress_reaches_lines_wandb_and_the_watch_view_while_the_phase_runs(campaign, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ENV_DIRS:   # the tracker points these into storage_path; monkeypatch puts them back
        monkeypatch.setenv(var, "unused")
    spec, _ = campaign("live", ["star"], method="esd-x", hparams={"esd-x": {"steps": STEPS, "batch": 4}},
                       tracking={"mode": "offline"})
    root = Path(spec.storage_path)
    lines: list[tuple[float, str]] = []
    run = in_thread(run_campaign, spec, echo=lambda line: lines.append((time.time(), line)))
    deadline = time.monotonic() + 60
    while not (root / "manifest.json").is_file():
        assert time.monotonic() < deadline, "the driver never wrote its journal"
        time.sleep(0.1)
    screen, status = watch_in_a_terminal(root, stop_after_s=540)
    outcome = joined(*run, timeout=120)

    assert outcome.status == "finished" and status == 0, screen[-3000:]
    attempt = Manifest.open(root).attempt_path(1, "star", 1)
    erase = current_run(read_records(attempt, "erase"))
    train = [r for r in erase if r.stage == "train"]
    assert [r.step for r in train] == list(range(1, STEPS + 1))         # steps // 100 -> a record every step
    assert erase[-1].stage == "end" and erase[-1].ok
    # 1. Progress lines: some arrived before the erase phase's worker wrote its end, i.e. while it ran.
    mid = [(t, line) for t, line in lines if re.search(rf" erase  (\d+)/{STEPS} steps", line)
           and int(re.search(rf"(\d+)/{STEPS} steps", line).group(1)) < STEPS]
    assert mid and all(t < erase[-1].t for t, _ in mid), [line for _, line in lines]
    assert any("loss " in line and "phase left" in line for _, line in mid)
    # 2. W&B: the attempt's erase run holds train/loss once per logged step, at that step.
    (erase_run,) = (root / "wandb" / "wandb").glob(f"offline-run-*-{run_id('live', 1, 1, 'erase')}")
    points = [row for row in history(run_file(erase_run)) if "train/loss" in row]
    assert [(p["train/step"], p["train/loss"]) for p in points] == [(float(r.step), r.loss) for r in train]
    # 3. The watch view drew the running erase phase with a partial bar, then the final state, and ended.
    running = [m for m in re.finditer(rf"star\s+running\s+1 esd-x\s+erase\s+(━*)\S*\s+(\d+)/{STEPS} steps", screen)
               if int(m.group(2)) < STEPS]
    assert running, screen[-3000:]
    assert "ETA " in screen and re.search(r"star\s+committed", screen)
