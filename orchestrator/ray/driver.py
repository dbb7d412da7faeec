"""The campaign driver: the campaign loop (orchestrator/loop.py) with its phases run as Ray tasks.

    launch.cluster.start()                 # or any ray.init(); the driver uses the connected cluster
    outcome = run_campaign(spec)           # RunOutcome: "finished" | "halted"

The manifest on spec.storage_path is the truth and the driver keeps nothing else, so a driver
killed at any point is continued by running it again: committed steps are never redone, an
attempt journaled "started" is redone with the same number and settings. A campaign directory
has one driver at a time (an flock on `<storage_path>/.driver.lock`, which the kernel drops
when the driver dies); any number of campaigns, each with its own driver, share a cluster.

Per attempt: record_start -> erase phase (num_cpus=cpus_per_step, num_gpus=gpus_per_step)
-> validation phase (num_gpus=validation_gpus, its looks split over validation.shards such tasks:
orchestrator/ray/shards.py) -> gate.decide -> record_result; the state
machine then asks for the commit (atomic, sha256-checked) or the next attempt. With
resources.prefetch_baselines the pipelined loop also runs "baseline" phases (validation_gpus each) that
draw the base model's images of coming steps' suites into the baseline cache ahead of their gates. A
phase that raised is a failed attempt (gate.error_decision); a phase whose worker died is re-run by Ray
(ray_tasks.MAX_RETRIES) before it counts as failed. A phase no node can ever hold raises
ClusterError after `schedule_timeout_s` instead of waiting forever. A driver that ends on an error
(that one, any other, Ctrl-C, SIGTERM) journals status "stopped" with the one-line reason before the
error goes on up; `erase resume` sets it running again. While a phase runs, the same
wait reads the attempt's progress.jsonl every POLL_S (the loop's `watch`), so progress lines, W&B
curves and live.json follow the phase from inside.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import ray
from ray.exceptions import (
    NodeDiedError,
    ObjectLostError,
    OutOfMemoryError,
    RayTaskError,
    WorkerCrashedError,
)

from erasecore import catalog, judge_check
from erasecore.concepts import erased_by
from erasecore.contracts import DeltaRef, StepRequest
from erasecore.errors import CampaignError, ClusterError, JudgeCheckError
from erasecore.judge_check import JudgeCheck
from orchestrator import schedule
from orchestrator.campaign import RunAttempt
from orchestrator.judge_check import requests as judge_check_requests
from orchestrator.live import DRIVER_LOCK, LiveStatus
from orchestrator.loop import CampaignLoop, PhaseOutput, RunOutcome, Watch, unwatched
from orchestrator.manifest import Manifest
from orchestrator.outputs.tracking import Tracker, TrackingCallbacks
from orchestrator.pipeline import PipelinedLoop
from orchestrator.preflight import Settled, preflight
from orchestrator.progress import ProgressLines
from orchestrator.ray import tasks as ray_tasks
from orchestrator.ray.lane import EraseLane
from orchestrator.ray.shards import shard_count
from orchestrator.ray.tasks import MAX_RETRIES
from orchestrator.spec import CampaignSpec

SCHEDULE_TIMEOUT_S = 60.0   # how long a phase may wait for a node that could hold it, when none exists
POLL_S = 1.0
LOCK = DRIVER_LOCK
# A worker or node that died, or an error outside the phase's own try: a failed attempt.
# Anything else (the head is gone, the driver lost Ray) stops the driver; resume redoes the attempt.
_PHASE_FAILURES = (WorkerCrashedError, NodeDiedError, OutOfMemoryError, ObjectLostError, RayTaskError)


def _print(line: str) -> None:
    print(line, flush=True)


def run_campaign(spec: CampaignSpec | Settled, echo: Callable[[str], None] = _print,
                 schedule_timeout_s: float = SCHEDULE_TIMEOUT_S, allow_spec_change: bool = False) -> RunOutcome:
    """Drive a campaign to its end on the connected Ray cluster, continuing whatever its journal holds.

    Given a bare spec, it is settled here (preflight); the CLI settles it before Ray starts.
    A journal started from another spec is refused unless allow_spec_change (e.g. a raised retry
    budget or new concepts at the end); committed steps stay committed either way.
    """
    if not ray.is_initialized():
        raise ClusterError("not connected to Ray (call launch.cluster.start() first)")
    settled = spec if isinstance(spec, Settled) else preflight(spec)
    spec = settled.spec
    root = Path(spec.storage_path)
    with driver_lock(root):
        manifest = Manifest.create(root, spec, allow_spec_change=allow_spec_change)
        with journaled_stop(manifest):
            return _run_loop(settled, manifest, echo, schedule_timeout_s)


def _run_loop(settled: Settled, manifest: Manifest, echo: Callable[[str], None],
              schedule_timeout_s: float) -> RunOutcome:
    chosen = schedule.choose(settled.spec, float(ray.cluster_resources().get("GPU", 0)))
    echo(chosen.why)
    settled = dataclasses.replace(settled, spec=chosen.spec)
    spec, root = settled.spec, manifest.root
    tracker = Tracker.from_spec(spec, root)   # W&B: only the driver logs, one run per attempt and phase
    callbacks = [ProgressLines(spec, manifest, echo), TrackingCallbacks(tracker), LiveStatus(manifest)]
    res = spec.resources
    # Speculation puts erases beside gates: keep one erase's devices for them (the chain waits otherwise).
    lane = EraseLane.open(res.gpus_per_step, res.cpus_per_step) if res.speculative else None
    try:
        self_check(settled, manifest, tracker, echo, schedule_timeout_s)
        executor = RayExecutor(spec, schedule_timeout_s, lane)
        if chosen.pipelined:
            return PipelinedLoop(settled, manifest, executor, callbacks, res.speculative,
                                 res.parallel_attempts, res.speculation_depth, res.prefetch_baselines).run()
        return CampaignLoop(settled, manifest, executor, callbacks).run()
    finally:
        tracker.close()
        if lane is not None:
            lane.close()


def self_check(settled: Settled, manifest: Manifest, tracker: Tracker, echo: Callable[[str], None],
               timeout_s: float = SCHEDULE_TIMEOUT_S) -> JudgeCheck:
    """The judge self-check before the first erase (erasecore/judge_check.py): journaled once per concept list,
    its images the gates' baselines; a concept the judge cannot measure stops the campaign (JudgeCheckError,
    one line) unless validation.allow_weak_judge, which is read again on every resume."""
    spec = settled.spec
    concepts = erased_by(spec.concepts)   # a group step's members each
    record = manifest.history.judge_check_for(concepts)
    if record is None:
        echo(f"judge self-check: {len(concepts)} concept(s) on {spec.model}'s own images")
        res = spec.resources
        need = {"CPU": float(res.cpus_per_step), "GPU": float(res.validation_gpus)}
        ref = ray_tasks.remote("judge_check", res.validation_gpus).options(
            num_cpus=need["CPU"], num_gpus=need["GPU"], name=f"judge-check:{spec.name}").remote(
            judge_check_requests(settled))
        out = _wait_fitting(ref, need, timeout_s, f"the judge self-check asks for {_amount(need)}")
        if out.error:
            raise JudgeCheckError(f"judge-check failed (its log: {out.log}): {out.error}")
        record = manifest.record_judge_check(out.value)
    check = judge_check.reverdict(record.check, spec.validation.allow_weak_judge)
    echo(judge_check.table(check))
    tracker.judge_checked(check)
    return judge_check.require(check)


def _wait_fitting(ref, need: dict[str, float], timeout_s: float, what: str) -> PhaseOutput:
    """ray.get, or a ClusterError once no alive node could hold `need` for timeout_s."""
    stuck_since = None
    while True:
        ready, _ = ray.wait([ref], timeout=POLL_S)
        if ready:
            try:
                return ray.get(ref)
            except _PHASE_FAILURES as e:
                return _failed("judge-check", e)
        nodes = _alive_nodes()
        if any(_fits(n, need) for n in nodes):
            stuck_since = None
            continue
        stuck_since = stuck_since or time.monotonic()
        if time.monotonic() - stuck_since >= timeout_s:
            ray.cancel(ref, force=True)
            raise ClusterError(f"{what} but no node of the cluster has that much (nodes: "
                               f"{'; '.join(_amount(n) for n in nodes[:6]) or 'none'})")


@contextlib.contextmanager
def journaled_stop(manifest: Manifest) -> Iterator[None]:
    """A loop that raises leaves its journal "stopped" with the one-line reason, then the error goes on up.

    A journal that already holds its end (finished, halted, cancelled) keeps it; one stopped before gets
    this stop's reason. A journal that cannot be written then is left as it is: the error is what matters.
    """
    try:
        yield
    except BaseException as e:
        if manifest.status in ("running", "stopped"):
            try:
                manifest.set_status("stopped", stop_reason(e))
            except Exception:  # noqa: BLE001 - never hide the error that stopped the driver
                pass
        raise


def stop_reason(e: BaseException) -> str:
    """Why the driver ended, in one line."""
    if isinstance(e, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(e, SystemExit):   # ray.init turns SIGTERM (erase cancel, a scheduler's stop) into sys.exit(15)
        return "terminated (SIGTERM)" if e.code == signal.SIGTERM else f"the driver exited ({e.code})"
    message = " ".join(str(e).split())
    if isinstance(e, CampaignError):
        return message
    return f"{type(e).__name__}: {message[:300]}" if message else type(e).__name__


@contextlib.contextmanager
def driver_lock(root: Path) -> Iterator[None]:
    """Hold the campaign directory for this driver; a second driver gets a CampaignError."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise CampaignError(f"campaign {root} is already being run by {holder}; "
                                "wait for it to end or stop it first") from None
        f.seek(0)
        f.truncate()
        f.write(f"driver pid {os.getpid()} on {socket.gethostname()}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class RayExecutor:
    """A step's phases as Ray tasks: erase on cpus/gpus_per_step (a worker group when it has several
    workers), validate on validation_gpus."""

    def __init__(self, spec: CampaignSpec, timeout_s: float, lane: EraseLane | None = None):
        self.spec, self.res, self.timeout_s, self.lane = spec, spec.resources, timeout_s, lane
        self.pending: dict = {}   # submitted ref -> (attempt, phase, need, watch), for the pipelined loop

    def erase(self, a: RunAttempt, request: StepRequest, watch: Watch = unwatched) -> PhaseOutput:
        return self._phase(a, "erase", None, request, watch)

    def validate(self, a: RunAttempt, request: StepRequest, candidate: DeltaRef,
                 watch: Watch = unwatched) -> PhaseOutput:
        return self._phase(a, "validate", candidate, request, watch)

    # -- the pipelined loop's interface (orchestrator/pipeline.ConcurrentExecutor) --

    def submit(self, a: RunAttempt, request: StepRequest, phase: str, candidate: DeltaRef | None = None,
               watch: Watch = unwatched):
        ref, need = self._submit(a, phase, candidate, request)
        self.pending[ref] = (a, phase, need, watch)
        return ref

    def wait(self, tickets):
        """The first of `tickets` to finish and its PhaseOutput; watches every running phase meanwhile."""
        waiting = {t: self.pending[t] for t in tickets}
        stuck_since = None
        while True:
            ready, _ = ray.wait(list(waiting), num_returns=1, timeout=POLL_S)
            if ready:
                a, phase, _, _ = self.pending.pop(ready[0])
                self._release(ready[0])
                return ready[0], self._get(ready[0], phase)
            for _, _, _, watch in waiting.values():
                watch()
            nodes = _alive_nodes()
            if any(_fits(n, need) for n in nodes for _, _, need, _ in waiting.values()):
                stuck_since = None
                continue
            stuck_since = stuck_since or time.monotonic()
            if time.monotonic() - stuck_since >= self.timeout_s:
                a, phase, need, _ = next(iter(waiting.values()))
                self.cancel(list(waiting))
                raise ClusterError(_unschedulable(a, phase, need, nodes))

    def cancel(self, tickets) -> None:
        for ref in tickets:
            self.pending.pop(ref, None)
            self._release(ref)
            ray.cancel(ref, force=True)

    def _release(self, ref) -> None:
        if self.lane is not None:
            self.lane.release(ref)

    # -- one phase --

    def _phase(self, a: RunAttempt, phase: str, candidate: DeltaRef | None, request: StepRequest,
               watch: Watch) -> PhaseOutput:
        ref, need = self._submit(a, phase, candidate, request)
        try:
            return self._await(ref, phase, a, need, watch)
        except _PHASE_FAILURES as e:
            return _failed(phase, e)
        finally:
            self._release(ref)

    def _submit(self, a: RunAttempt, phase: str, candidate: DeltaRef | None, request: StepRequest):
        """Start the phase's task: (ref, what it needs of one node)."""
        if phase == "erase":
            gpus, args, group = self.res.gpus_per_step, (request,), _is_group(request)
        elif phase == "baseline":   # the base model's images of a suite, drawn ahead of its gate
            gpus, args, group = self.res.validation_gpus, (request,), False
        else:
            reserve = self.res.gpus_per_step if self.res.speculative else 0.0
            shards = shard_count(self.spec.validation.shards, self.res.validation_gpus, reserve)
            gpus, group = self.res.validation_gpus, False
            args = (request, candidate, shards, self.res.cpus_per_step, self.res.validation_gpus)
        # A worker group must fit on one node (STRICT_PACK); its launcher task itself holds nothing.
        need = {"CPU": float(self.res.cpus_per_step), "GPU": float(gpus)}
        task, held = (ray_tasks.remote("erase_group", 0), {"CPU": 0.0, "GPU": 0.0}) if group \
            else (ray_tasks.remote(phase, gpus), need)
        lane = self.lane.options() if self.lane is not None and phase == "erase" and not group else {}
        # The name is the worker's process title while it runs (ray::erase:toy:1.1): ps shows who is who.
        ref = task.options(num_cpus=held["CPU"], num_gpus=held["GPU"], **lane,
                           name=f"{phase}:{self.spec.name}:{a.step}.{a.attempt}").remote(*args)
        if lane:
            self.lane.occupy(ref, lane)
        return ref, need

    def _get(self, ref, phase: str) -> PhaseOutput:
        try:
            return ray.get(ref)
        except _PHASE_FAILURES as e:
            return _failed(phase, e)

    def _await(self, ref, phase: str, a: RunAttempt, need: dict[str, float], watch: Watch) -> PhaseOutput:
        """ray.get, except that a phase no alive node can hold fails after timeout_s instead of hanging;
        every POLL_S the phase's progress file is read (watch) so its records reach the callbacks live."""
        stuck_since = None
        while True:
            ready, _ = ray.wait([ref], timeout=POLL_S)
            if ready:
                return ray.get(ref)
            watch()
            nodes = _alive_nodes()
            if any(_fits(n, need) for n in nodes):
                stuck_since = None   # it can run somewhere: waiting for a busy cluster is normal
                continue
            stuck_since = stuck_since or time.monotonic()
            if time.monotonic() - stuck_since >= self.timeout_s:
                ray.cancel(ref, force=True)
                raise ClusterError(_unschedulable(a, phase, need, nodes))


def _unschedulable(a: RunAttempt, phase: str, need: dict[str, float], nodes: list[dict[str, float]]) -> str:
    return (f"the {phase} phase of step {a.step} ({a.concept}) asks for {_amount(need)} but no node of the "
            f"cluster has that much (nodes: {'; '.join(_amount(n) for n in nodes[:6]) or 'none'}); lower "
            f"resources.{'gpus_per_step' if phase == 'erase' else 'validation_gpus'}/cpus_per_step or "
            f"add a node, then `erase resume`")


def _failed(phase: str, e: Exception) -> PhaseOutput:
    reason = " ".join(str(e).split())[:300]
    return PhaseOutput(phase, None, f"{type(e).__name__} (after up to {MAX_RETRIES} retries): {reason}", None, 0.0, "")


def _is_group(request: StepRequest) -> bool:
    """A fine-tune with num_workers > 1 runs as a worker group; a closed-form edit is one process."""
    return request.parallel.num_workers > 1 and not catalog.get(request.method).closed_form


def _alive_nodes() -> list[dict[str, float]]:
    return [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]


def _fits(node: dict[str, float], need: dict[str, float]) -> bool:
    return all(node.get(k, 0.0) >= v for k, v in need.items() if v > 0)


def _amount(resources: dict[str, float]) -> str:
    return f"{resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU"
