"""One erasure step on a worker, as recipes the orchestrator runs as separate Ray tasks:

    erase:     setup (load base + parents, the concept's prompts) -> erase (the catalog method)
               -> save (delta.safetensors, rank 0) -> cleanup
    validate:  setup (the suite, the judge, the cached baseline) -> measure (base + parents +
               candidate) -> save (gate_report.json, grid.png + grid.json) -> cleanup
    baseline:  (drawn ahead, resources.prefetch_baselines) the base model's images of a step's suite
               into the baseline cache, so its gate draws only the candidate

    python -m jobs.step REQUEST.json      # both phases, without Ray

Each writes into the request's out_dir: request.json, delta.safetensors, erase_stats.json,
gate_report.json, grid.png + grid.json, attention.png + attention.json, result.json, and progress.jsonl (start, the fine-tune's
"train" records or the validator's image counts, end; rank 0 alone in a worker group), which the
driver follows while the phase runs. The request arrives settled by the
orchestrator's preflight (its judge and parallel layout resolved). Never imports Ray.
"""
from __future__ import annotations

import contextlib
import gc
import json
import resource
import sys
import time
from pathlib import Path

import torch

from jobs.deltas import delta as deltas
from jobs.methods import registry
from jobs.methods.interface import EraseInputs, MethodOutput
from jobs.models.loader import load_pipeline
from jobs.training import distributed
from jobs.training.concept_prompts import concept_prompts
from jobs.training.step_checkpoints import DirectoryCheckpoints
from jobs.validation.attack import AttackProbe
from jobs.validation.attack_optimized import OptimizedAttackProbe
from jobs.validation.gate_views import GateViews
from jobs.validation.grid_draft import GridDraft
from jobs.validation.shards import Spread
from jobs.validation.validator import for_request
from erasecore.codec import from_json, to_json
from erasecore.atomic import atomic_write_text
from erasecore.contracts import GATE_REPORT, DeltaRef, GateReport, StepRequest, StepResult
from erasecore.errors import ConfigError
from erasecore import judges
from erasecore.phase_progress import ProgressWriter


# ---- erase --------------------------------------------------------------------------------------

def run_erase(request: StepRequest, log=print, checkpoints=None) -> DeltaRef | None:
    """Erase the concept from base + parents; write and return the candidate delta.

    As one worker of a group (Ray Train sets RANK/WORLD_SIZE), every worker trains and rank 0
    alone writes the delta; the others return None.
    """
    out = _setup(request, log)
    progress = ProgressWriter(out, "erase", enabled=distributed.is_main())
    progress.write("start", note=f"{request.method} on {_device()} x{distributed.world_size()}")
    own = None
    if checkpoints is None and distributed.world_size() == 1:   # a worker group's come from Ray Train
        checkpoints = own = DirectoryCheckpoints(out / "checkpoints")
    if distributed.is_main():
        (out / GATE_REPORT).unlink(missing_ok=True)   # a gate of an earlier erase of this attempt is not this one's
        atomic_write_text(out / "request.json", to_json(request))
    torch.manual_seed(request.seed)   # before loading: the seeded state every method starts from
    pipe = load_pipeline(request.model, device=_device(), frozen_precision=request.frozen_precision)
    try:
        with _ended(progress):
            deltas.stack(pipe, request.parents)
            output = _erase(pipe, request, log, checkpoints, progress)
            _write_stats(out, output.stats)
            ref = _save(request, output, out) if distributed.is_main() else None
            if own is not None:
                own.clear()
            return ref
    finally:
        del pipe
        _cleanup()


def _erase(pipe, request: StepRequest, log, checkpoints, progress=None) -> MethodOutput:
    prompts = concept_prompts(request.concept, request.preserve, _drawn_world(request))
    inputs = EraseInputs(request.concept, prompts, dict(request.hparams), request.seed, log,
                         distributed.Parallel(request.parallel, checkpoints), progress,
                         parents=tuple(request.parents))
    return registry.erase(request.method, pipe, inputs)


def _save(request: StepRequest, output: MethodOutput, out: Path) -> DeltaRef:
    parent = request.parents[-1].sha256 if request.parents else ""
    meta = deltas.DeltaMeta(kind=output.kind, method=request.method, concept=request.concept,
                            config=dict(request.hparams), parent_sha256=parent, rank=output.rank,
                            alpha=output.alpha)
    return deltas.save_delta(output.tensors, meta, out / "delta.safetensors")


def _write_stats(out: Path, stats: dict) -> None:
    """What this worker's erase cost: the method's timings and the process's peak memory."""
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux reports KiB
    name = f"erase_stats.rank{distributed.rank()}.json" if distributed.world_size() > 1 else "erase_stats.json"
    (out / name).write_text(json.dumps({**stats, "peak_rss_mb": round(peak_mb, 1), "device": _device()}, indent=1))


# ---- validate -----------------------------------------------------------------------------------

def run_validation(request: StepRequest, candidate: DeltaRef, log=print, spread: Spread | None = None) -> GateReport:
    """Measure base + parents + candidate against the cached base model; write gate_report.json.

    `spread` shares the looks with helper shards (jobs/validation/shards.py); None draws them all here."""
    out = _setup(request, log)
    progress = ProgressWriter(out, "validate")
    progress.write("start", note=f"validation on {_device()}")
    validator, suite = for_request(request, _judge(request), log)
    validator.progress = progress
    validator.spread = spread or validator.spread
    pipe = load_pipeline(request.model, device=_device(), frozen_precision=request.frozen_precision)
    try:
        with _ended(progress):
            base = validator.baseline(pipe, request.model, suite)  # cached per (model, suite, settings)
            grid = GridDraft(suite, request.validation, log)
            progress.write("grid", note="base")
            grid.draw_base(pipe, validator.cache, request.model)    # before any delta is stacked
            # An erasure's gate also gets the views (drift, capability, attention maps) and the attacks;
            # a final sweep erases nothing: it only measures.
            views = None if request.sweep else GateViews(request, candidate, pipe, validator, log)
            # The closed-form attack captures the base model's K/V, the optimized one its images of the concept.
            attacks = [] if request.sweep else [probe(suite, request.validation, validator.judge, log)
                                                for probe in (AttackProbe, OptimizedAttackProbe)]
            if views:
                views.draw_base(pipe)
            for attack in attacks:
                attack.capture(pipe)
            deltas.stack(pipe, tuple(request.parents) + (candidate,))
            report = validator.validate(pipe, suite, base)
            validator.spread.release()   # the views, attacks and grid below are drawn here: helpers' GPUs can go
            for attack in attacks:
                report = attack.finish(pipe, report)
            if views:
                report = views.finish(pipe, report, out)
            progress.write("grid", note="erased")
            grid.finish(pipe, out)
            atomic_write_text(out / GATE_REPORT, to_json(report))   # last: a complete report means a finished gate
            return report
    finally:
        del pipe
        _cleanup()


def run_baseline(request: StepRequest, log=print) -> int:
    """The base model's images of the request's suite (the baseline and the grid's base row) into the baseline
    cache, ahead of the gate that needs them; returns the observations cached. The gate's own baseline() finds
    them by the same key (model, suite, settings): a gate started after this draws only its candidate."""
    _setup(request, log)
    validator, suite = for_request(request, _judge(request), log)
    pipe = load_pipeline(request.model, device=_device(), frozen_precision=request.frozen_precision)
    try:
        base = validator.baseline(pipe, request.model, suite)
        GridDraft(suite, request.validation, log).draw_base(pipe, validator.cache, request.model)
        log(f"  baseline of step {request.step} ({request.concept}): {len(base)} observations cached")
        return len(base)
    finally:
        del pipe
        _cleanup()


# ---- setup and cleanup, shared by the phases ---------------------------------------------------

@contextlib.contextmanager
def _ended(progress: ProgressWriter):
    """The phase's last progress record: ok, or the error's first line (the error still propagates)."""
    try:
        yield
    except BaseException as e:
        progress.write("end", ok=False, note=f"{type(e).__name__}: {' '.join(str(e).split())[:200]}")
        raise
    progress.write("end", ok=True)


def _setup(request: StepRequest, log) -> Path:
    out = Path(request.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log(f"  worker: {distributed.describe()}")
    _check_released(log)
    return out


def _judge(request: StepRequest) -> str:
    """The judge preflight settled into the request ("auto" means the request skipped preflight)."""
    if request.validation.judge == "auto":
        raise ConfigError("the step request's validation.judge is 'auto': build requests through the "
                          "orchestrator's preflight (erase run), which settles the judge")
    return request.validation.judge


def _drawn_world(request: StepRequest) -> str:
    """The judge whose world the model draws (its prompts come from that world's provider, whichever judge
    gates it: the toy world's for the toy model, a toy-judged pipeline or the toyworld concept set), or ""."""
    for entry in judges.entries():
        if entry.world_prompts and ((entry.model and request.model == entry.model) or
                                    request.validation.judge == entry.name or
                                    (entry.concept_set and Path(request.concepts_from).stem == entry.concept_set)):
            return entry.name
    return ""


def _device() -> str:
    return str(distributed.device())


def _cleanup() -> None:
    """Free what the step held so the next step finds its device empty."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _check_released(log) -> None:
    """A phase in a reused worker process must start clean; say what an earlier phase left behind."""
    if distributed.world_size() > 1:
        return   # inside a worker group the process group is this step's own
    for leftover in distributed.leftovers():
        log(f"  warning: an earlier step left {leftover}; releasing it")
    distributed.release_all()


# ---- both phases in one process -----------------------------------------------------------------

def run_step(request: StepRequest, log=print) -> StepResult:
    """Both phases in this process (standalone use and benchmarks)."""
    t0 = time.time()
    ref = run_erase(request, log)
    t1 = time.time()
    report = run_validation(request, ref, log)
    result = StepResult(request, ref, report, erase_seconds=t1 - t0, validate_seconds=time.time() - t1)
    (Path(request.out_dir) / "result.json").write_text(to_json(result))
    return result


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m jobs.step REQUEST.json", file=sys.stderr)
        return 2
    result = run_step(from_json(StepRequest, Path(args[0]).read_text()))
    print(json.dumps({"delta": result.delta.path, "forgetting": result.report.forgetting.value,
                      "retain": result.report.retain.value}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
