"""Processes killed where a campaign is most fragile, on a real local Ray and the toy model.

- a driver (a real `erase run`) SIGKILLed before its first commit, then `erase resume`: the campaign finishes
  with the commits an uninterrupted run makes, none of them twice;
- a sharded gate's helper SIGKILLed while it draws a look: a helper's death is a system failure, not the
  candidate's, so the gate draws the lost look itself and reports exactly what the unsharded gate reports,
  without failing the attempt (a failed attempt would spend the retry budget and could skip the concept).
"""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
import ray

from erasecore.codec import to_json
from orchestrator.manifest import Manifest, sha256_file
from tests.fixtures.drivers import attempts, kill_when, resume
from tests.fixtures.reports import timeless

pytestmark = pytest.mark.ray


# ---- a driver killed before its first commit ---------------------------------------------------------------

def test_driver_killed_before_the_first_commit_resumes_and_commits_once(campaign):
    # A short gate, whose 2 denoising steps barely draw a star: the test is the kill, the judge self-check flags it.
    small = {"seeds": 1, "inference_steps": 2, "max_prompts_per_group": 2, "allow_weak_judge": True}
    spec, path = campaign("killfirst", ["star"], validation=small)
    storage = Path(spec.storage_path)
    progress = storage / "steps/1-star/attempt-1/progress.jsonl"
    # Mid-erase: the attempt is journaled as started and its worker has begun writing into the attempt's directory.
    kill_when(path, storage, lambda st: any(a["status"] == "started" for a in attempts(st)) and progress.exists(),
              "the erase phase", timeout=120)

    before = Manifest.open(storage).history
    assert before.commits == () and before.outcomes == (), "the kill must land before the first commit"
    assert [(a.attempt, a.status) for a in before.attempts] == [(1, "started")]

    out = resume(storage)

    after = Manifest.open(storage).history
    # What the uninterrupted run of this spec commits: FORCE_COMMIT's gate passes the one UCE candidate.
    assert after.status == "finished"
    assert [(c.step, c.concept, c.attempt) for c in after.commits] == [(1, "star", 1)]
    assert [(o.step, o.outcome) for o in after.outcomes] == [(1, "committed")]
    (attempt,) = after.attempts                      # the killed attempt redone, not a second one
    assert attempt.status == "finished" and attempt.decision.committed and attempt.restarts == 1
    (commit,) = after.commits
    assert commit.delta == attempt.candidate and sha256_file(storage / commit.delta.path) == commit.delta.sha256
    deltas = [c.delta.path for c in after.commits]
    assert len(set(deltas)) == len(deltas)           # no attempt directory committed twice
    assert "committed" in out and "finished" in out


# ---- a sharded gate's helper killed mid-look --------------------------------------------------------------

def gate_settings(shards: int) -> dict:
    # Small looks and no early stop: the gate has many looks, and the helper draws several of them. Three
    # denoising steps barely draw a star: the judge self-check flags it (the test is the sharding).
    return {"seeds": 1, "inference_steps": 3, "max_prompts_per_group": 4, "batch_size": 4, "shards": shards,
            "early_stop": False, "allow_weak_judge": True}


@ray.remote(num_cpus=0, max_restarts=0)
class DyingHelper:
    """A helper with the shard worker's interface that is SIGKILLed while it draws look `dies_at`."""

    def __init__(self, dies_at: int):
        self.dies_at = dies_at

    def ready(self) -> bool:
        return True

    def observe(self, part):
        if part == [self.dies_at]:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.05)
        return ("helper", part)


@pytest.mark.usefixtures("local_ray")
def test_a_pool_whose_helper_dies_mid_look_draws_that_look_itself_in_order():
    from orchestrator.ray.shards import ShardPool

    pool = ShardPool([DyingHelper.remote(dies_at=1)], expected=1)
    try:
        out = list(pool.observe([[i] for i in range(6)], lambda part: (time.sleep(0.2), ("gate", part))[1]))
    finally:
        pool.close()
    assert [part for _, part in out] == [[i] for i in range(6)]   # every look, once, in order
    assert out[1] == ("gate", [1])                                 # the helper's look, drawn by the gate
    assert pool.lost == 1 and pool.joined() == 1


class HelperKiller:
    """Kills the first of this process's Ray workers seen drawing a candidate look as a gate helper (Ray sets a
    busy actor's process title to ray::<Class>.<method>); only this test's own descendants are looked at."""

    TITLE = "ray::Shard.observe"

    def __init__(self):
        self.killed: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        me = psutil.Process(os.getpid())
        while not self._stop.is_set() and not self.killed:
            for proc in me.children(recursive=True):
                try:
                    if " ".join(proc.cmdline()).startswith(self.TITLE):
                        proc.send_signal(signal.SIGKILL)
                        self.killed.append(proc.pid)
                        return
                except psutil.Error:
                    continue
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.mark.usefixtures("local_ray")
def test_sharded_gate_with_a_helper_killed_mid_look_reports_the_unsharded_report(campaign):
    from orchestrator.ray.driver import run_campaign

    # One attempt only, and a concept given up when it fails: a gate that failed because its helper died would
    # show as a skipped concept here, not as a retry that hides it.
    once = {"max_attempts": 1, "on_exhausted": "skip"}
    one, _ = campaign("helper-one", ["star"], validation=gate_settings(1), retry=once)
    assert run_campaign(one, echo=lambda line: None).status == "finished"

    two, _ = campaign("helper-two", ["star"], validation=gate_settings(2), retry=once)
    killer = HelperKiller()
    try:
        outcome = run_campaign(two, echo=lambda line: None)
    finally:
        killer.stop()
    assert killer.killed, "no helper was seen drawing a look: the kill never happened"
    assert outcome.status == "finished"

    (plain,) = Manifest.open(one.storage_path).history.attempts
    history = Manifest.open(two.storage_path).history
    (sharded,) = history.attempts
    assert sharded.decision.committed, sharded.decision.reasons
    assert [(c.step, c.attempt) for c in history.commits] == [(1, 1)]
    assert sharded.candidate.sha256 == plain.candidate.sha256
    assert to_json(timeless(sharded.report)) == to_json(timeless(plain.report))
    log = (Path(two.storage_path) / "steps/1-star/attempt-1/validate.log").read_text()
    assert "2 of 2 shards joined" in log and "1 lost" in log
