"""The driver on one local Ray session: commits, concurrent campaigns, a killed worker, failing and stuck steps."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from erasecore.contracts import Estimate, JudgeIdentity
from erasecore.errors import CampaignError, ClusterError
from erasecore.judge_check import OK, ConceptVerdict, JudgeCheck, JudgeRates
from orchestrator.live import snapshot
from orchestrator.manifest import Manifest, sha256_file
from orchestrator.ray.driver import driver_lock, run_campaign

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("local_ray")]


def in_thread(fn, *args, **kwargs):
    """Run fn in a thread; returns (thread, box) where box holds 'value' or 'error' afterwards."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - re-raised by joined()
            box["error"] = e
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def joined(thread, box, timeout=180):
    thread.join(timeout)
    assert not thread.is_alive(), "campaign did not end"
    if "error" in box:
        raise box["error"]
    return box["value"]


def test_campaign_finishes_and_commits_every_concept(campaign):
    spec, _ = campaign("commits", ["star", "square"])
    lines: list[str] = []
    outcome = run_campaign(spec, echo=lines.append)

    assert outcome.status == "finished" and outcome.committed == ("star", "square")
    manifest = Manifest.open(spec.storage_path)
    assert manifest.status == "finished"
    for ref in manifest.committed_deltas():
        assert sha256_file(Path(ref.path)) == ref.sha256
    # The cumulative check: step 2 was asked to re-check star, and its report measured it.
    request = json.loads((Path(spec.storage_path) / "steps/2-square/attempt-1/request.json").read_text())
    assert request["erased_before"] == ["star"]
    assert "star" in manifest.history.attempts_for(2)[0].report.cumulative
    # One line per phase change, then the table and where the deltas are.
    assert any(" 1/2 star " in line and " erase " in line for line in lines)
    assert any(" 2/2 square " in line and " committed " in line for line in lines)
    table = lines[-1]
    assert "forgetting" in table and table.count("committed") >= 2
    assert str(Path(spec.storage_path) / "steps/2-square/attempt-1/delta.safetensors") in table


def journaled_judge_check(spec) -> None:
    """The campaign's journal holding its judge self-check already (as a resumed campaign's does): its driver
    starts with the steps, and which campaign's check waits longer for a worker does not decide the race."""
    seen = (Estimate(1.0, 0.8, 1.0, 16), Estimate(0.0, 0.0, 0.2, 16))
    check = JudgeCheck(JudgeIdentity("toyworld"), spec.model, 1, 0.95,
                       tuple(ConceptVerdict(JudgeRates(c, *seen), OK) for c in spec.concepts))
    Manifest.create(spec.storage_path, spec).record_judge_check(check)


def test_two_campaigns_interleave_on_one_cluster(campaign):
    specs = [campaign("left", ["star", "square"])[0], campaign("right", ["star", "square"])[0]]
    for spec in specs:
        journaled_judge_check(spec)
    stamps: dict[str, list[tuple[float, str]]] = {"left": [], "right": []}
    runs = [in_thread(run_campaign, s, echo=lambda line, n=s.name: stamps[n].append((time.monotonic(), line)))
            for s in specs]
    outcomes = [joined(*run) for run in runs]

    assert [o.status for o in outcomes] == ["finished", "finished"]
    for spec in specs:
        manifest = Manifest.open(spec.storage_path)
        assert manifest.campaign == spec.name and len(manifest.history.commits) == 2
        assert all(not Path(c.delta.path).is_absolute() for c in manifest.history.commits)
        assert all(Path(ref.path).is_relative_to(spec.storage_path) for ref in manifest.committed_deltas())

    def first(name, word):
        return next(t for t, line in stamps[name] if f" {word} " in line or line.endswith(f" {word}"))
    # Each campaign started its first erase before the other committed its first step: they ran together.
    assert first("left", "erase") < first("right", "committed")
    assert first("right", "erase") < first("left", "committed")


def erase_header_count(log: Path) -> int:
    return log.read_text().count("--- erase phase") if log.exists() else 0


def test_killed_worker_is_retried_and_campaign_finishes(campaign):
    spec, _ = campaign("crash", ["star"])
    log = Path(spec.storage_path) / "steps/1-star/attempt-1/erase.log"
    run = in_thread(run_campaign, spec, echo=lambda line: None)

    deadline = time.monotonic() + 120
    while erase_header_count(log) == 0:   # the phase has started inside its worker
        assert time.monotonic() < deadline, "erase phase never started"
        time.sleep(0.05)
    worker = next(p for p in psutil.process_iter(["cmdline"])
                  if (p.info["cmdline"] or [""])[0].startswith("ray::erase:crash:1.1"))
    os.kill(worker.pid, signal.SIGKILL)   # a real process death, mid-step
    outcome = joined(*run)

    assert outcome.status == "finished" and outcome.committed == ("star",)
    placement = json.loads((log.parent / "placement.json").read_text())
    assert placement["erase"]["placement"]["pid"] != worker.pid      # Ray re-ran it in a new worker
    assert erase_header_count(log) == 2
    attempts = Manifest.open(spec.storage_path).history.attempts_for(1)
    assert len(attempts) == 1 and attempts[0].restarts == 0           # ...without costing an attempt


def test_failing_phase_is_a_failed_attempt_and_the_policy_goes_on(campaign):
    # A projection the model does not have: well-typed, so only the step itself can find out.
    spec, _ = campaign("broken", ["star"], hparams={"uce": {"projections": ["to_nowhere"]}},
                       retry={"max_attempts": 2, "on_exhausted": "halt"})
    outcome = run_campaign(spec, echo=lambda line: None)

    assert outcome.status == "halted"
    manifest = Manifest.open(spec.storage_path)
    attempts = manifest.history.attempts_for(1)
    assert [a.attempt for a in attempts] == [1, 2]                    # retried, then out of budget
    for a in attempts:
        assert a.decision.failed == ("error",)
        assert a.decision.reasons[0].startswith("step failed: erase: AttributeError:")
        assert "\n" not in a.decision.reasons[0]
    assert manifest.status == "halted" and not manifest.history.commits


def test_step_that_no_node_can_hold_fails_with_a_reason(campaign):
    spec, _ = campaign("toobig", ["star"], resources={"gpus_per_step": 4})
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match=r"asks for 1 CPU, 4 GPU but no node") as err:
        run_campaign(spec, echo=lambda line: None, schedule_timeout_s=1)
    assert time.monotonic() - t0 < 30
    manifest = Manifest.open(spec.storage_path)
    started = manifest.history.attempts_for(1)
    assert [a.status for a in started] == ["started"]   # left for `erase resume` once resources fit
    # The driver's end is journaled, so status, watch and the report say what happened.
    assert (manifest.status, manifest.stop_reason) == ("stopped", str(err.value))
    shown = erase_status(spec.storage_path)
    assert f"campaign toobig: stopped: {err.value}" in shown.stdout, shown.stdout + shown.stderr
    # A driver killed outright (SIGKILL) journals nothing: its lock, dropped by the kernel, tells.
    manifest.set_status("running")
    root = Path(spec.storage_path)
    with driver_lock(root):
        assert snapshot(spec, root).driver is True
    assert snapshot(spec, root).driver is False
    shown = erase_status(spec.storage_path)
    assert "campaign toobig: no driver is running" in shown.stdout and "erase resume to continue" in shown.stdout


def erase_status(storage_path: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "launch.cli", "status", str(storage_path)], capture_output=True,
                          text=True, timeout=120, check=False, cwd=Path(__file__).resolve().parents[2])


def test_second_driver_on_one_campaign_is_refused(campaign):
    spec, _ = campaign("locked", ["star"])
    with driver_lock(Path(spec.storage_path)), pytest.raises(CampaignError, match="already being run by driver pid"):
        run_campaign(spec, echo=lambda line: None)
