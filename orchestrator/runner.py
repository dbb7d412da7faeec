"""The campaign driver: next_action -> erase and validate as Ray tasks -> gate -> manifest, until done.

    launch.cluster.start()                 # or any ray.init(); the driver uses the connected cluster
    outcome = run_campaign(spec)           # RunOutcome: "finished" | "halted"

The manifest on spec.storage_path is the truth and the driver keeps nothing else, so a driver
killed at any point is continued by running it again: committed steps are never redone, an
attempt journaled "started" is redone with the same number and settings. A campaign directory
has one driver at a time (an flock on `<storage_path>/.driver.lock`, which the kernel drops
when the driver dies); any number of campaigns, each with its own driver, share a cluster.

Per attempt: record_start -> erase phase (num_cpus=cpus_per_step, num_gpus=gpus_per_step)
-> validation phase (num_gpus=validation_gpus) -> gate.decide -> record_result; the state
machine then asks for the commit (atomic, sha256-checked) or the next attempt. A phase that
raised is a failed attempt (gate.error_decision); a phase whose worker died is re-run by Ray
(ray_tasks.MAX_RETRIES) before it counts as failed. A phase no node can ever hold raises
ClusterError after `schedule_timeout_s` instead of waiting forever.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import ray
from ray.exceptions import NodeDiedError, ObjectLostError, OutOfMemoryError, RayTaskError, WorkerCrashedError

from jobs.contracts import StepRequest
from jobs.methods import CLOSED_FORM
from orchestrator import ray_tasks
from orchestrator.campaign import CommitAttempt, Finished, Halted, RunAttempt, SkipConcept, next_action, step_request
from orchestrator.errors import CampaignError, ClusterError
from orchestrator.gate import GateDecision, decide, error_decision
from orchestrator.manifest import Manifest
from orchestrator.tracking import Tracker
from orchestrator.progress import Clock, concepts_left, duration, event_line, metrics, phase_line, summary_table
from orchestrator.ray_tasks import MAX_RETRIES, PhaseOutput
from orchestrator.spec import CampaignSpec, check_judge

SCHEDULE_TIMEOUT_S = 60.0   # how long a phase may wait for a node that could hold it, when none exists
POLL_S = 1.0
LOCK = ".driver.lock"
# A worker or node that died, or an error outside the phase's own try: a failed attempt.
# Anything else (the head is gone, the driver lost Ray) stops the driver; resume redoes the attempt.
_PHASE_FAILURES = (WorkerCrashedError, NodeDiedError, OutOfMemoryError, ObjectLostError, RayTaskError)


@dataclass(frozen=True)
class RunOutcome:
    status: str                 # "finished" | "halted"
    reason: str
    storage_path: str
    committed: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()


def _print(line: str) -> None:
    print(line, flush=True)


def run_campaign(spec: CampaignSpec, echo: Callable[[str], None] = _print,
                 schedule_timeout_s: float = SCHEDULE_TIMEOUT_S, allow_spec_change: bool = False) -> RunOutcome:
    """Drive `spec` to its end on the connected Ray cluster, continuing whatever its journal holds.

    A journal started from another spec is refused unless allow_spec_change (e.g. a raised retry
    budget or new concepts at the end); committed steps stay committed either way.
    """
    if not ray.is_initialized():
        raise ClusterError("not connected to Ray (call launch.cluster.start() first)")
    check_model(spec.model)
    check_judge(spec)   # before the journal: a gate without a judge would fail every attempt
    root = Path(spec.storage_path)
    with driver_lock(root):
        manifest = Manifest.create(root, spec, allow_spec_change=allow_spec_change)
        tracker = Tracker.from_spec(spec, root)
        try:
            return _Driver(spec, manifest, echo, schedule_timeout_s, tracker).run()
        finally:
            tracker.close()


def check_model(model: str) -> None:
    """Fail before any Ray or journal work when a local model directory is missing (hub ids pass)."""
    from jobs.models import TOY, ModelLoadError, resolve

    ref = Path(resolve(model))
    local = model == TOY or ref.exists() or model.startswith((".", "/", "~")) or model.count("/") != 1
    if not local:
        return
    hint = " (train it with `erase toyworld train` or point ERASE_TOYWORLD_DIR at a trained world)" \
        if model == TOY else ""
    if not ref.is_dir():
        raise ModelLoadError(f"model {model!r}: no such directory {ref}{hint}")
    if not (ref / "model_index.json").is_file():
        raise ModelLoadError(f"model {model!r}: {ref} is not a diffusers pipeline directory (no model_index.json)")
    if model == TOY and not (ref.parent / "evaluator").is_dir():
        raise ModelLoadError(f"model {model!r}: no evaluator beside the pipeline in {ref.parent}{hint}")


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


class _Driver:
    """The loop of one campaign; everything it knows is in the manifest."""

    def __init__(self, spec: CampaignSpec, manifest: Manifest, echo: Callable[[str], None], timeout_s: float,
                 tracker: Tracker):
        self.spec, self.manifest, self.echo, self.timeout_s = spec, manifest, echo, timeout_s
        self.tracker = tracker  # W&B: only the driver logs, one run per attempt and phase
        self.res = spec.resources
        self.clock = Clock(started=time.monotonic())
        self.current_started: float | None = None

    def run(self) -> RunOutcome:
        if self.manifest.status in ("finished", "halted"):
            self.manifest.set_status("running")   # resumed (e.g. after the spec's retry budget was raised)
        while True:
            action = next_action(self.spec, self.manifest.history)
            if isinstance(action, RunAttempt):
                self._attempt(action)
            elif isinstance(action, CommitAttempt):
                self._commit(action)
            elif isinstance(action, SkipConcept):
                self.manifest.skip(action.step, action.concept, action.reason)
                self._event(f"skipped {action.concept}: {action.reason}")
            elif isinstance(action, Halted):
                return self._halt(action)
            else:
                return self._finish(action)

    # -- one attempt --

    def _attempt(self, a: RunAttempt) -> None:
        self.current_started = time.monotonic()
        self.manifest.record_start(a.step, a.concept, a.attempt, a.method, a.hparams)
        self.tracker.attempt_started(a.step, a.concept, a.attempt, a.method, a.hparams)
        request = step_request(a, self.spec)
        phases = self._phases(a, request)
        _write_placement(Path(request.out_dir), phases)
        self._record(a, phases)
        self.clock.attempt_done(time.monotonic() - self.current_started)
        self.current_started = None

    def _phases(self, a: RunAttempt, request: StepRequest) -> list[PhaseOutput]:
        """Erase, then (if that worked) validate the candidate."""
        self._line(a, "erase", "redo of an interrupted attempt" if a.redo else _hparams(a.hparams))
        erase = self._phase(a, "erase", (request,), self.res.gpus_per_step, group=_is_group(request))
        if erase.error:
            return [erase]
        self._line(a, "validate", f"erase took {_where(erase)}")
        return [erase, self._phase(a, "validate", (request, erase.value), self.res.validation_gpus)]

    def _record(self, a: RunAttempt, phases: list[PhaseOutput]) -> None:
        """Journal the gate's decision, or the failed phase's one-line reason."""
        host = ", ".join(f"{p.phase}@{p.placement.host}/{p.placement.node_id[:8]}" for p in phases if p.placement)
        failed = next((p for p in phases if p.error), None)
        if failed is not None:
            decision = error_decision(f"{failed.phase}: {failed.error}")
            self.manifest.record_result(a.step, a.attempt, decision, host=host)
            self.tracker.attempt_finished(None, decision, phase_seconds={p.phase: p.seconds for p in phases})
            self._line(a, f"{failed.phase} failed", failed.error + (f" (log {failed.log})" if failed.log else ""))
            return
        erase, validate = phases
        decision = decide(validate.value, self.spec.gate)
        self.manifest.record_result(a.step, a.attempt, decision, validate.value, erase.value, host)
        self.tracker.attempt_finished(validate.value, decision, candidate=erase.value,
                                      phase_seconds={p.phase: p.seconds for p in phases})
        self._line(a, "gate", f"{metrics(validate.value)} -> {_verdict(decision)}")

    def _phase(self, a: RunAttempt, phase: str, args: tuple, gpus: float, group: bool = False) -> PhaseOutput:
        # A worker group must fit on one node (STRICT_PACK); its launcher task itself holds nothing.
        need = {"CPU": float(self.res.cpus_per_step), "GPU": float(gpus)}
        task, held = (ray_tasks.remote("erase_group", 0), {"CPU": 0.0, "GPU": 0.0}) if group \
            else (ray_tasks.remote(phase, gpus), need)
        # The name is the worker's process title while it runs (ray::erase:toy:1.1): ps shows who is who.
        ref = task.options(num_cpus=held["CPU"], num_gpus=held["GPU"],
                           name=f"{phase}:{self.spec.name}:{a.step}.{a.attempt}").remote(*args)
        try:
            return self._await(ref, phase, a, need)
        except _PHASE_FAILURES as e:
            reason = " ".join(str(e).split())[:300]
            return PhaseOutput(phase, None, f"{type(e).__name__} (after up to {MAX_RETRIES} retries): {reason}",
                               None, 0.0, "")

    def _await(self, ref, phase: str, a: RunAttempt, need: dict[str, float]) -> PhaseOutput:
        """ray.get, except that a phase no alive node can hold fails after timeout_s instead of hanging."""
        stuck_since = None
        while True:
            ready, _ = ray.wait([ref], timeout=POLL_S)
            if ready:
                return ray.get(ref)
            nodes = _alive_nodes()
            if any(_fits(n, need) for n in nodes):
                stuck_since = None   # it can run somewhere: waiting for a busy cluster is normal
                continue
            stuck_since = stuck_since or time.monotonic()
            if time.monotonic() - stuck_since >= self.timeout_s:
                ray.cancel(ref, force=True)
                raise ClusterError(
                    f"the {phase} phase of step {a.step} ({a.concept}) asks for {_amount(need)} but no node of the "
                    f"cluster has that much (nodes: {'; '.join(_amount(n) for n in nodes[:6]) or 'none'}); lower "
                    f"resources.{'gpus_per_step' if phase == 'erase' else 'validation_gpus'}/cpus_per_step or "
                    f"add a node, then `erase resume`")

    def _commit(self, c: CommitAttempt) -> None:
        record = self.manifest.commit(c.step, c.attempt)
        self.tracker.committed(c.step, c.concept, self.manifest.root / record.delta.path, record.delta.sha256)
        self._line(c, "committed", f"{self.manifest.root / record.delta.path} sha256 {record.delta.sha256[:12]}")

    # -- endings --

    def _halt(self, h: Halted) -> RunOutcome:
        if self.manifest.status != "cancelled":
            self.manifest.set_status("halted")
        self._event(f"halted: {h.reason}")
        self.echo(summary_table(self.spec, self.manifest.history, self.manifest.root))
        return RunOutcome("halted", h.reason, str(self.manifest.root))

    def _finish(self, f: Finished) -> RunOutcome:
        self.manifest.set_status("finished")
        self._event(f"finished: {len(f.committed)} committed, {len(f.skipped)} skipped")
        self.echo(summary_table(self.spec, self.manifest.history, self.manifest.root))
        return RunOutcome("finished", "", str(self.manifest.root), f.committed, f.skipped)

    # -- progress --

    def _line(self, a: RunAttempt | CommitAttempt, phase: str, detail: str) -> None:
        now = time.monotonic()
        method = next(r.method for r in self.manifest.history.attempts_for(a.step) if r.attempt == a.attempt)
        eta = self.clock.eta(now, concepts_left(self.spec, self.manifest.history), self.current_started)
        self.echo(phase_line(self.spec.name, a.step, len(self.spec.concepts), a.concept, a.attempt, method,
                             phase, detail, now - self.clock.started, eta))

    def _event(self, text: str) -> None:
        self.echo(event_line(self.spec.name, time.monotonic() - self.clock.started, text))


def _is_group(request: StepRequest) -> bool:
    """A fine-tune with num_workers > 1 runs as a worker group; a closed-form edit is one process."""
    return request.parallel.num_workers > 1 and request.method not in CLOSED_FORM


def _alive_nodes() -> list[dict[str, float]]:
    return [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]


def _fits(node: dict[str, float], need: dict[str, float]) -> bool:
    return all(node.get(k, 0.0) >= v for k, v in need.items() if v > 0)


def _amount(resources: dict[str, float]) -> str:
    return f"{resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU"


def _hparams(hparams: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(hparams.items())) or "default hparams"


def _where(p: PhaseOutput) -> str:
    if p.placement is None:
        return duration(p.seconds)
    gpus = f" gpus {','.join(p.placement.gpu_ids)}" if p.placement.gpu_ids else ""
    return f"{duration(p.seconds)} on {p.placement.host} node {p.placement.node_id[:8]}{gpus}"


def _verdict(decision: GateDecision) -> str:
    if decision.committed:
        return f"accepted ({len(decision.reasons)} checks pass)"
    return "rejected: " + "; ".join(decision.reasons[:len(decision.failed)])


def _write_placement(out_dir: Path, phases: list[PhaseOutput]) -> None:
    """Where each phase ran, beside the candidate (placement.json): for people and placement tests."""
    data = {p.phase: {"placement": asdict(p.placement) if p.placement else None, "seconds": p.seconds,
                      "error": p.error, "log": p.log} for p in phases}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "placement.json").write_text(json.dumps(data, indent=1, sort_keys=True))
