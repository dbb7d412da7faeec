"""Progressive, gated erasure of related concepts vs all at once, same method and budget.

    python benches/progressive.py [--concepts circle,semicircle,crescent] [--method uce]

Progressive: one concept per step, each starting from the committed model, each gated by the
validator (a rejected step is not committed). One-shot: one edit on the union of the concepts.
Both are then measured on every concept's suite against the original base. Prints target,
evasion, retain and leakage per arm; writes bench-results/progressive.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.deltas import delta as deltas  # noqa: E402
from jobs.toyworld.concept_prompts import toy_concept_prompts  # noqa: E402
from jobs.training.concept_prompts import merged  # noqa: E402
from erasecore.contracts import StepRequest, ValidationSpec  # noqa: E402
from jobs.methods import registry  # noqa: E402
from jobs.methods.interface import EraseInputs  # noqa: E402
from jobs.models.loader import load_pipeline  # noqa: E402
from jobs.step import run_step, run_validation  # noqa: E402
from jobs.toyworld.world import load_world  # noqa: E402

QUIET = {"log": lambda *a: None}


def progressive(concepts, method, spec, work: Path, gate) -> tuple[tuple, list]:
    parents, log = (), []
    for k, c in enumerate(concepts, 1):
        req = StepRequest("progressive", k, 1, c, method, {}, "toyworld", parents, str(work / f"p{k}"),
                          erased_before=tuple(concepts[:k - 1]), validation=spec, cache_dir=str(work / "cache"))
        res = run_step(req, **QUIET)
        ok = gate(res.report)
        log.append({"concept": c, "forgetting": res.report.forgetting.value, "retain": res.report.retain.value,
                    "committed": ok})
        if ok:
            parents = parents + (res.delta,)
    return parents, log


def oneshot(concepts, method, work: Path):
    world = load_world()
    pipe = load_pipeline("toyworld")
    prompts = merged([toy_concept_prompts(world, c) for c in concepts])
    out = registry.erase(method, pipe, EraseInputs("+".join(concepts), prompts, {}, 0, **QUIET))
    meta = deltas.DeltaMeta(kind=out.kind, method=method, concept="+".join(concepts), rank=out.rank, alpha=out.alpha)
    return (deltas.save_delta(out.tensors, meta, work / "oneshot" / "delta.safetensors"),)


def measure(concepts, refs, spec, work: Path, tag: str) -> dict:
    """Every concept's suite on base + refs (the candidate slot is the last ref)."""
    rows = []
    for c in concepts:
        others = tuple(x for x in concepts if x != c)
        req = StepRequest(tag, 1, 1, c, "uce", {}, "toyworld", tuple(refs[:-1]), str(work / f"m-{tag}-{c}"),
                          erased_before=others, validation=spec, cache_dir=str(work / "cache"))
        rows.append(run_validation(req, refs[-1], **QUIET))
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {"target_acc": mean([r.target_acc.value for r in rows]),
            "forgetting": mean([r.forgetting.value for r in rows]),
            "evasion": mean([mean([e.value for e in r.evasion.values()]) for r in rows]),
            "retain": mean([r.retain.value for r in rows]),
            "retain_near": mean([r.retain_by_distance.get("near", r.retain).value for r in rows]),
            "leakage": mean([r.leakage.value for r in rows]), "kl": mean([r.kl for r in rows])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concepts", default="circle,semicircle,crescent")
    ap.add_argument("--method", default="uce")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--min-forgetting", type=float, default=0.9)
    ap.add_argument("--min-retain", type=float, default=0.9)
    ap.add_argument("--out", type=Path, default=Path("bench-results/progressive.json"))
    args = ap.parse_args()
    concepts = args.concepts.split(",")
    spec = ValidationSpec(seeds=args.seeds, early_stop=False, judge="toyworld")   # what preflight settles for the toy model
    work = Path(tempfile.mkdtemp(prefix="bench-progressive-"))
    gate = lambda r: r.forgetting.value >= args.min_forgetting and r.retain.value >= args.min_retain  # noqa: E731
    t0 = time.time()
    refs, steps = progressive(concepts, args.method, spec, work, gate)
    t1 = time.time()
    prog = measure(concepts, refs, spec, work, "progressive") if refs else {}
    one_refs = oneshot(concepts, args.method, work)
    t2 = time.time()
    one = measure(concepts, one_refs, spec, work, "oneshot")
    rows = {"progressive": {**prog, "committed": sum(s["committed"] for s in steps), "seconds": t1 - t0, "steps": steps},
            "oneshot": {**one, "committed": len(concepts), "seconds": t2 - t1}}
    cols = ["target_acc", "forgetting", "evasion", "retain", "retain_near", "leakage", "kl"]
    print(f"concepts {concepts}, method {args.method}, {args.seeds} seeds per prompt")
    print(f"{'arm':>12} " + " ".join(f"{c:>11}" for c in cols) + "  committed")
    for arm, r in rows.items():
        print(f"{arm:>12} " + " ".join(f"{r.get(c, float('nan')):11.3f}" for c in cols) + f"  {r['committed']}/{len(concepts)}")
    for s in steps:
        print(f"  progressive step {s['concept']}: forgetting {s['forgetting']:.2f} retain {s['retain']:.2f} "
              f"{'committed' if s['committed'] else 'rejected'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    print(f"wrote {args.out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
