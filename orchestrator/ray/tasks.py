"""The Ray tasks of a step: its erase phase, its validation phase and a baseline drawn ahead of a gate; and
the campaign's judge self-check, before its first erase.

Ray's side of a step (orchestrator/ray/ is the only folder of orchestrator/ that imports Ray). Each task
wraps one worker phase of jobs/step.py and returns a PhaseOutput:

- An application error (a bad hyperparameter, an unloadable model) is caught here and
  returned as `error`, one line; the traceback goes to the phase's log file beside the
  candidate (`<out_dir>/<phase>.log`). Ray does not retry it: the driver records a failed
  attempt and the retry policy decides.
- A system failure (the worker process or its node dies) is Ray's to handle: the task is
  re-run up to MAX_RETRIES times, so the driver only sees it when every retry died.

jobs/ (and ray.train.torch) is imported inside the tasks, so a driver that only schedules never loads torch.
A phase asking for GPUs runs in a fresh worker process (see remote()).
"""
from __future__ import annotations

import contextlib
import os
import socket
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from erasecore.contracts import DeltaRef, StepRequest
from orchestrator.loop import PhaseOutput, Placement
from orchestrator.ray.shards import ShardPool

MAX_RETRIES = 3   # re-runs of a phase whose worker process or node died


def erase_phase(request: StepRequest) -> PhaseOutput:
    """Erase request.concept from base + parents; the value is the candidate's DeltaRef."""
    def work(log):
        from jobs.step import run_erase
        return run_erase(request, log)
    return _run("erase", request, work)


def erase_group_phase(request: StepRequest) -> PhaseOutput:
    """The erase phase as a Ray Train worker group (request.parallel.num_workers > 1).

    This task only launches and waits: it holds no resources; the group's workers hold them.
    """
    def work(log):
        from orchestrator.ray.train import (
            fit_erase,  # ray.train.torch imports torch: not in the driver
        )

        log(f"  launching {request.parallel.num_workers} workers ({request.parallel.strategy}); "
            f"their logs: erase.rank<k>.log")
        return fit_erase(request)
    return _run("erase", request, work)


def validate_phase(request: StepRequest, candidate: DeltaRef, shards: int = 1, cpus: float = 1.0,
                   gpus: float = 0.0) -> PhaseOutput:
    """Measure base + parents + candidate; the value is the GateReport.

    With shards > 1, shards - 1 helper actors (cpus, gpus each) draw looks beside this task
    (orchestrator/ray/shards.py); the report is the unsharded one."""
    def work(log):
        from jobs.step import run_validation
        if shards <= 1:
            return run_validation(request, candidate, log)
        pool = ShardPool.open(request, candidate, shards - 1, cpus, gpus)
        try:
            report = run_validation(request, candidate, log, spread=pool)
            lost = f"; {pool.lost} lost, their looks drawn here" if pool.lost else ""
            log(f"  sharded gate: {pool.joined() + 1} of {shards} shards joined{lost}")
            return report
        finally:
            pool.close()
    return _run("validate", request, work)


def baseline_phase(request: StepRequest) -> PhaseOutput:
    """The base model's images of the request's suite, into the baseline cache; the value is how many."""
    def work(log):
        from jobs.step import run_baseline
        return run_baseline(request, log)
    return _run("baseline", request, work)


def judge_check_phase(requests: tuple[StepRequest, ...]) -> PhaseOutput:
    """The judge self-check on the base model (jobs/validation/judge_check.py); the value is the JudgeCheck.
    The images it judges are the concepts' gate baselines, cached for their gates."""
    def work(log):
        from jobs.validation.judge_check import check_judge
        return check_judge(requests, log=log)
    return _run("judge-check", requests[0], work)


# A phase that holds GPUs runs in a fresh worker process (max_calls=1), so the device is free when
# the next phase starts. Ray does that by default only for GPUs asked in @ray.remote, not in
# .options(), hence two remote functions per phase; a CPU phase may reuse a warm worker.
_TASKS = {(fn.__name__, gpu): ray.remote(max_retries=MAX_RETRIES, **({"max_calls": 1} if gpu else {}))(fn)
          for fn in (erase_phase, erase_group_phase, validate_phase, baseline_phase, judge_check_phase)
          for gpu in (False, True)}


def remote(phase: str, gpus: float):
    """The Ray remote function for `phase` ("erase" | "erase_group" | "validate" | "baseline" | "judge_check")
    asking for `gpus` GPUs."""
    return _TASKS[f"{phase}_phase", gpus > 0]


def _run(phase: str, request: StepRequest, work: Callable[[Callable[..., None]], Any]) -> PhaseOutput:
    t0 = time.time()
    placement = _placement()
    out = Path(request.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / f"{phase}.log"
    # Appending keeps the record of a run that crashed and was retried.
    with open(log_path, "a", encoding="utf-8") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        # Device ordinals go wrong silently; every phase logs what it was given.
        print(f"--- {phase} phase: {request.campaign} step {request.step} attempt {request.attempt} "
              f"({request.concept}, {request.method}) on {placement.host} node {placement.node_id} "
              f"pid {placement.pid} gpus {list(placement.gpu_ids)} "
              f"CUDA_VISIBLE_DEVICES={placement.cuda_visible_devices!r}", flush=True)
        try:
            value, error = work(_log), ""
        except Exception as e:  # noqa: BLE001 - any application error: the policy decides, not Ray
            traceback.print_exc()
            value, error = None, _one_line(e)
    return PhaseOutput(phase, value, error, placement, time.time() - t0, str(log_path))


def _log(*args, **kwargs) -> None:
    print(*args, **{**kwargs, "flush": True})   # the log file is read while the phase runs


def _placement() -> Placement:
    ctx = ray.get_runtime_context()
    return Placement(node_id=ctx.get_node_id(), host=socket.gethostname(), pid=os.getpid(),
                     gpu_ids=tuple(str(g) for g in ray.get_gpu_ids()),
                     cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES", ""))


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
