"""One erasure step on a worker: setup -> erase -> save -> validate -> cleanup.

    python -m jobs.step REQUEST.json      # or: erase step CAMPAIGN.yaml ...

Reads a StepRequest, writes into its out_dir: delta.safetensors, gate_report.json, request.json,
result.json. Never imports Ray: the orchestrator calls run_step() inside a Ray task.
"""
from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path

import torch

from jobs import deltas
from jobs.concept_prompts import concept_prompts
from jobs.contracts import GateReport, StepRequest, StepResult, from_json, to_json
from jobs.methods import registry
from jobs.methods.interface import EraseInputs, MethodOutput
from jobs.models import TOY, load_pipeline


class ErasureStep:
    """The recipe for one (concept, attempt): small lifecycle, readable top to bottom."""

    def __init__(self, request: StepRequest, log=print):
        self.req, self.log = request, log
        self.out = Path(request.out_dir)
        self.pipe = None

    def setup(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "request.json").write_text(to_json(self.req))
        torch.manual_seed(self.req.seed)
        self.pipe = load_pipeline(self.req.model, device="cuda" if torch.cuda.is_available() else "cpu")
        self.validator, self.suite = self._validation()
        if self.validator is not None:  # the base model's scores, cached across steps
            self.base = self.validator.baseline(self.pipe, self.req.model, self.suite)
        deltas.stack(self.pipe, self.req.parents)

    def erase(self) -> MethodOutput:
        prompts = concept_prompts(self.req.model, self.req.concept, self.req.preserve)
        inputs = EraseInputs(self.req.concept, prompts, dict(self.req.hparams), self.req.seed, self.log)
        return registry.erase(self.req.method, self.pipe, inputs)

    def save(self, output: MethodOutput):
        parent = self.req.parents[-1].sha256 if self.req.parents else ""
        meta = deltas.DeltaMeta(kind=output.kind, method=self.req.method, concept=self.req.concept,
                                config=dict(self.req.hparams), parent_sha256=parent, rank=output.rank,
                                alpha=output.alpha)
        ref = deltas.save_delta(output.tensors, meta, self.out / "delta.safetensors")
        return ref, meta

    def validate(self, tensors, meta) -> GateReport:
        if self.validator is None:
            raise NotImplementedError("validating a real model needs a VQA judge, which this build lacks; "
                                      "run real models with the toy world's validator replaced (issue 5)")
        deltas.apply_delta(self.pipe, tensors, meta)
        report = self.validator.validate(self.pipe, self.suite, self.base)
        (self.out / "gate_report.json").write_text(to_json(report))
        return report

    def cleanup(self) -> None:
        self.pipe = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _validation(self):
        if self.req.model != TOY:
            return None, None
        from jobs.toyworld.build import WEIGHTS
        from jobs.toyworld.evaluator import Evaluator
        from jobs.toyworld.world import load_world
        from jobs.validation.suite import build_suite
        from jobs.validation.validator import BaselineCache, Validator

        world = load_world()
        v = self.req.validation
        suite = build_suite(world, self.req.concept, self.req.erased_before, v.max_prompts_per_group)
        cache = BaselineCache(self.req.cache_dir or self.out / "baseline-cache")
        return Validator(world, Evaluator.load(world, WEIGHTS / "evaluator"), v, cache, self.log), suite


def run_step(request: StepRequest, log=print) -> StepResult:
    """Erase, save the candidate delta, validate it; the pipeline never leaves this function."""
    step = ErasureStep(request, log)
    try:
        step.setup()
        t0 = time.time()
        output = step.erase()
        ref, meta = step.save(output)
        t1 = time.time()
        tensors, _ = deltas.load_delta(ref.path, ref.sha256)  # validate exactly what was written
        report = step.validate(tensors, meta)
        result = StepResult(request, ref, report, erase_seconds=t1 - t0, validate_seconds=time.time() - t1)
        (step.out / "result.json").write_text(to_json(result))
        return result
    finally:
        step.cleanup()


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
