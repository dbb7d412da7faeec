"""What the campaign views cost per gate on the toy world: drift, the capability bench, the attention maps.

    python benches/gate_views.py [--concepts star square round]

Erases the concepts one after another with UCE (each on top of the ones before) and runs each gate's
views as the measure phase does (jobs/validation/gate_views.py): draw_base on the base pipeline (cold:
an empty cache; warm: the next gate's, from the cache) and finish on base + parents + candidate.
Prints a table per gate of those seconds, the text_kv drift relative to the base and the capability
score; writes bench-results/gate_views.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from jobs.deltas import delta as deltas  # noqa: E402
from jobs.methods import registry  # noqa: E402
from jobs.methods.interface import EraseInputs  # noqa: E402
from jobs.models.loader import load_pipeline  # noqa: E402
from jobs.training import distributed  # noqa: E402
from jobs.training.concept_prompts import concept_prompts  # noqa: E402
from jobs.validation.gate_views import GateViews  # noqa: E402
from jobs.validation.validator import for_request  # noqa: E402
from erasecore.contracts import Estimate, GateReport, ParallelSpec, StepRequest, ValidationSpec  # noqa: E402


def quiet(*_):
    pass


def erase(pipe, concept: str, parents: list, out: Path):
    deltas.stack(pipe, parents)
    inputs = EraseInputs(concept, concept_prompts(concept, (), "toyworld"), {}, 0, quiet,
                         distributed.Parallel(ParallelSpec(), None), None)
    output = registry.erase("uce", pipe, inputs)
    unstack(pipe, parents)
    return deltas.save_delta(output.tensors, deltas.DeltaMeta(kind=output.kind, method="uce", concept=concept),
                             out / f"{concept}.safetensors")


def unstack(pipe, refs) -> None:
    for ref in reversed(refs):
        deltas.remove_delta(pipe, *deltas.load_delta(ref.path))


def gate(pipe, concept: str, erased: list, parents: list, candidate, out: Path) -> dict:
    request = StepRequest(campaign="bench", step=len(parents) + 1, attempt=1, concept=concept, method="uce",
                          hparams={}, model="toyworld", parents=tuple(parents), out_dir=str(out / concept),
                          erased_before=tuple(erased),
                          validation=ValidationSpec(judge="toyworld"), cache_dir=str(out / "cache"))
    validator, _ = for_request(request, "toyworld", log=quiet)
    row = {"concept": concept}
    for label in ("cold", "warm"):
        views = GateViews(request, candidate, pipe, validator, log=quiet)
        t0 = time.time()
        views.draw_base(pipe)
        row[f"base_{label}_s"] = round(time.time() - t0, 2)
    deltas.stack(pipe, tuple(parents) + (candidate,))
    e = Estimate(0.0, 0.0, 0.0, 0)
    t0 = time.time()
    report = views.finish(pipe, GateReport(concept, e, e, 0.0, {}, e, {}, e, 0.0, 0.0, {}, 0, False, 0.0), out / concept)
    row["finish_s"] = round(time.time() - t0, 2)
    unstack(pipe, tuple(parents) + (candidate,))
    row["text_kv_relative"] = round(report.drift["text_kv"].relative, 4)
    row["capability"] = round(report.capability.score, 3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concepts", nargs="+", default=["star", "square", "round"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipe = load_pipeline("toyworld", device="cpu")
    rows, parents = [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for concept in args.concepts:
            candidate = erase(pipe, concept, parents, out)
            rows.append(gate(pipe, concept, args.concepts[:len(parents)], parents, candidate, out))
            parents.append(candidate)
    head = list(rows[0])
    print("  ".join(f"{h:>16}" for h in head))
    for r in rows:
        print("  ".join(f"{r[h]!s:>16}" for h in head))
    (REPO / "bench-results").mkdir(exist_ok=True)
    (REPO / "bench-results" / "gate_views.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
