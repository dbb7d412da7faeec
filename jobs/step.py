"""One erasure step on a worker: erase (setup -> erase -> save) then validate (setup -> measure).

    python -m jobs.step REQUEST.json      # both phases, without Ray

The orchestrator runs the two phases as separate Ray tasks (validation may sit on other devices);
each writes into the request's out_dir: request.json, delta.safetensors, gate_report.json,
grid.png + grid.json (before/after images, jobs/validation/grids.py), result.json. Never imports Ray.
"""
from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path

import torch

from jobs import deltas, distributed
from jobs.concept_prompts import concept_prompts
from jobs.contracts import DeltaRef, GateReport, StepRequest, StepResult, from_json, judge_for, to_json
from jobs.methods import registry
from jobs.methods.interface import EraseInputs
from jobs.models import load_pipeline


def _device() -> str:
    return str(distributed.device())


def _release() -> None:
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


def run_erase(request: StepRequest, log=print, checkpoints=None) -> DeltaRef | None:
    """Erase the concept from base + parents; write and return the candidate delta.

    As one worker of a group (Ray Train sets RANK/WORLD_SIZE), every worker trains and rank 0
    alone writes the delta; the others return None.
    """
    out = Path(request.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if distributed.is_main():
        (out / "request.json").write_text(to_json(request))
    log(f"  worker: {distributed.describe()}")
    _check_released(log)
    torch.manual_seed(request.seed)
    pipe = load_pipeline(request.model, device=_device())
    try:
        deltas.stack(pipe, request.parents)
        prompts = concept_prompts(request.model, request.concept, request.preserve, request.validation.judge)
        inputs = EraseInputs(request.concept, prompts, dict(request.hparams), request.seed, log,
                             distributed.Parallel(request.parallel, checkpoints))
        output = registry.erase(request.method, pipe, inputs)
        _write_stats(out, output.stats)
        if not distributed.is_main():
            return None
        parent = request.parents[-1].sha256 if request.parents else ""
        meta = deltas.DeltaMeta(kind=output.kind, method=request.method, concept=request.concept,
                                config=dict(request.hparams), parent_sha256=parent, rank=output.rank,
                                alpha=output.alpha)
        return deltas.save_delta(output.tensors, meta, out / "delta.safetensors")
    finally:
        del pipe
        _release()


def _write_stats(out: Path, stats: dict) -> None:
    """What this worker's erase cost: the method's timings and the process's peak memory."""
    import resource

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux reports KiB
    name = f"erase_stats.rank{distributed.rank()}.json" if distributed.world_size() > 1 else "erase_stats.json"
    (out / name).write_text(json.dumps({**stats, "peak_rss_mb": round(peak_mb, 1), "device": _device()}, indent=1))


def run_validation(request: StepRequest, candidate: DeltaRef, log=print) -> GateReport:
    """Measure base + parents + candidate against the cached base model; write gate_report.json."""
    if judge_for(request.model, request.validation.judge) != "toyworld":   # spec.check_judge refuses this first
        raise NotImplementedError("validating a real model needs a VQA judge, which this build lacks")
    _check_released(log)
    validator, suite = _toy_validator(request, log)
    pipe = load_pipeline(request.model, device=_device())
    try:
        base = validator.baseline(pipe, request.model, suite)  # cached per (model, suite, settings)
        grid = _GridDraft(suite, request.validation, log)
        grid.draw_base(pipe, validator.cache, request.model)    # before any delta is stacked
        deltas.stack(pipe, tuple(request.parents) + (candidate,))
        report = validator.validate(pipe, suite, base)
        Path(request.out_dir).mkdir(parents=True, exist_ok=True)
        (Path(request.out_dir) / "gate_report.json").write_text(to_json(report))
        grid.finish(pipe, request.out_dir)
        return report
    finally:
        del pipe
        _release()


class _GridDraft:
    """The before/after grid of one gate (jobs/validation/grids.py). Never fails the gate: a failure is one log line."""

    def __init__(self, suite, spec, log):
        from jobs.validation import grids

        self.suite, self.spec, self.log = suite, spec, log
        self.keys = grids.pick(suite)
        self.before = None
        self.seconds = 0.0

    def draw_base(self, pipe, cache, model: str) -> None:
        """The base model's images of the grid's keys, cached like the baseline (the same on every gate)."""
        import hashlib

        from jobs.validation.validator import generate

        t0 = time.time()
        try:
            name = f"grid-{cache.key(model, self.suite, self.spec)}-" \
                   f"{hashlib.sha256(repr(self.keys).encode()).hexdigest()[:8]}"
            self.before = cache.load_images(name)
            if self.before is None or len(self.before) != len(self.keys):
                self.before = generate(pipe, self.suite, self.keys, self.spec)
                cache.save_images(name, self.before)
        except Exception as e:   # noqa: BLE001 - a grid is a picture, not a gate input
            self.log(f"grid: base images failed, no grid for this attempt ({type(e).__name__}: {e})")
        self.seconds += time.time() - t0

    def finish(self, pipe, out_dir) -> None:
        from jobs.validation import grids
        from jobs.validation.validator import generate

        if self.before is None:
            return
        t0 = time.time()
        try:
            after = generate(pipe, self.suite, self.keys, self.spec)
            path = grids.write_grid(out_dir, self.suite, self.keys, self.before, after)
        except Exception as e:   # noqa: BLE001
            self.log(f"grid: not written ({type(e).__name__}: {e})")
            return
        self.seconds += time.time() - t0
        self.log(f"grid: {len(self.keys)} prompts, base and erased, {self.seconds:.1f}s -> {path}")


def _toy_validator(request: StepRequest, log):
    from jobs.toyworld.paths import WEIGHTS
    from jobs.toyworld.evaluator import Evaluator
    from jobs.toyworld.world import load_world
    from jobs.validation.suite import build_suite
    from jobs.validation.validator import BaselineCache, Validator

    world = load_world()
    v = request.validation
    suite = build_suite(world, request.concept, request.erased_before, v.max_prompts_per_group)
    cache = BaselineCache(request.cache_dir or Path(request.out_dir) / "baseline-cache")
    return Validator(world, Evaluator.load(world, WEIGHTS / "evaluator"), v, cache, log), suite


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
