"""The founding experiment on the toy world: erase related concepts one at a time with a gate, all at once, or by
the parent word alone; then ask whether the parent still appears.

    python benches/variants.py [--experiment variants|superclass|both] [--methods uce,rece,esd-x] [--seeds 0,1,2]
    python benches/variants.py --summarize bench-results/variants*.json    # mean and range over training seeds

Two experiments, as the side-effects study ran them:
- variants: every colour of one object ("red star", "green star", "blue star", "yellow star");
- superclass: the members of a superclass (circle, semicircle, crescent of `round`) then the word itself
  (`expand: members` in a campaign).
Five arms per method and training seed, each starting from the base model:
- progressive: one concept per step, each from the committed model, each gated by the product's gate
  (orchestrator/gate.py, default thresholds); a rejected step is not committed; one attempt per concept;
- search: the same list as a user runs it (`erase run` on a local Ray), the gate as above, and after a
  rejection the product's search (the method at half and twice its strength, then SPEED; 3 attempts per
  concept, a candidate chosen after a rejection confirmed on fresh seeds);
- sequential: the study's own arm: every concept erased in turn from the one before and kept, ungated;
- one-shot: one erase of the union of the concepts (their prompts merged, as benches/progressive.py does);
- parent: one erase of the parent word alone ("star", "round").
Every arm's final model is then measured on the parent's suite (jobs/validation/suite.py): forgetting of the
parent (target, subclasses, every colour, size and material composition, paraphrases: does it still appear
through other compositions?), evasion per kind, retain near (siblings) and far, leakage, drift (labels changed
vs the base) and attack success (jobs/validation/attack.py), each with its Wilson interval at the gate's
confidence. Closed-form methods do not depend on the training seed: they run once. Prints a table and
writes bench-results/variants.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jobs.deltas import delta as deltas  # noqa: E402
from jobs.methods import registry  # noqa: E402
from jobs.methods.interface import EraseInputs  # noqa: E402
from jobs.models.loader import load_pipeline  # noqa: E402
from jobs.step import run_step, run_validation  # noqa: E402
from jobs.toyworld.world import load_world  # noqa: E402
from jobs.toyworld.concept_prompts import toy_concept_prompts  # noqa: E402
from jobs.training.concept_prompts import merged  # noqa: E402
from erasecore import catalog  # noqa: E402
from erasecore.contracts import StepRequest, ValidationSpec  # noqa: E402
from orchestrator.gate import decide  # noqa: E402
from orchestrator.manifest import Manifest  # noqa: E402
from orchestrator.spec import GateThresholds  # noqa: E402

EXPERIMENTS = {"variants": ("star", ["red star", "green star", "blue star", "yellow star"]),
               "superclass": ("round", ["circle", "semicircle", "crescent", "round"])}
QUIET = {"log": lambda *a: None}


def request(tag: str, k: int, concept: str, method: str, parents, work: Path, spec, seed: int, before=()):
    return StepRequest("variants", k, 1, concept, method, {}, "toyworld", tuple(parents), str(work / tag),
                       erased_before=tuple(before), validation=spec, cache_dir=str(work / "cache"), seed=seed)


def progressive(concepts, method, spec, work: Path, seed: int) -> tuple[tuple, list[dict]]:
    """One gated step per concept, each from the committed model; the product's gate decides."""
    parents, steps, committed = (), [], []
    for k, c in enumerate(concepts, 1):
        res = run_step(request(f"p{seed}-{k}", k, c, method, parents, work, spec, seed, committed), **QUIET)
        decision = decide(res.report, GateThresholds())
        steps.append({"concept": c, "committed": decision.committed, "failed": list(decision.failed),
                      "forgetting": round(res.report.forgetting.value, 3), "retain": round(res.report.retain.value, 3)})
        if decision.committed:
            parents, committed = parents + (res.delta,), committed + [c]
    return parents, steps


def sequential(concepts, method, spec, work: Path, seed: int) -> tuple:
    """The study's protocol: each concept erased from the model the previous erase left, kept whatever it did."""
    parents: tuple = ()
    for k, c in enumerate(concepts, 1):
        res = run_step(request(f"s{seed}-{k}", k, c, method, parents, work, spec, seed, concepts[:k - 1]), **QUIET)
        parents += (res.delta,)
    return parents


def searched(concepts, method, spec, work: Path, seed: int, tag: str) -> tuple[tuple, list[dict]]:
    """`erase run` of the list with the product's search after a rejection; the committed deltas and per-step rows."""
    root = work / tag
    doc = {"name": tag, "model": "toyworld", "concepts": list(concepts), "method": method, "ladder": [],
           "seed": seed, "storage_path": str(root), "tracking": {"mode": "disabled"},
           "retry": {"max_attempts": 1, "on_exhausted": "skip"},
           "search": {"methods": [method], "strengths": [0.5, 2.0],
                      "candidates": [{"method": "speed"}], "max_attempts": 3},
           "validation": {"seeds": spec.seeds, "early_stop": spec.early_stop},
           "resources": {"cpus_per_step": 2}}
    root.mkdir(parents=True, exist_ok=True)
    (root / "campaign.yaml").write_text(json.dumps(doc))
    done = subprocess.run([str(REPO / ".venv" / "bin" / "erase"), "run", str(root / "campaign.yaml")], cwd=REPO,
                          text=True, capture_output=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"erase run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    h = Manifest.open(root).history
    commits = {c.concept: c for c in h.commits}
    tried = {c: [a for a in h.attempts if a.concept == c] for c in concepts}
    steps = [{"concept": c, "committed": c in commits, "attempts": len(tried[c]),
              "chosen": next((f"{a.method} {a.hparams}" for a in tried[c] if a.attempt == commits[c].attempt), None)
              if c in commits else None} for c in concepts]
    refs = tuple(dataclasses.replace(commits[c].delta, path=str(root / commits[c].delta.path))
                 for c in concepts if c in commits)
    return refs, steps


def oneshot(concepts, method, work: Path, seed: int, tag: str) -> tuple:
    """One erase of the union: the concepts' prompts merged, as benches/progressive.py erases them."""
    world = load_world()
    pipe = load_pipeline("toyworld")
    prompts = merged([toy_concept_prompts(world, c) for c in concepts])
    hp = catalog.get(method).resolve({})
    out = registry.erase(method, pipe, EraseInputs("+".join(concepts), prompts, hp, seed, **QUIET))
    meta = deltas.DeltaMeta(kind=out.kind, method=method, concept="+".join(concepts), rank=out.rank, alpha=out.alpha)
    return (deltas.save_delta(out.tensors, meta, work / tag / "delta.safetensors"),)


def measure(parent: str, refs: tuple, spec, work: Path, tag: str) -> dict:
    """The parent's suite on base + refs (the last ref in the candidate slot), against the base."""
    if not refs:
        return {"committed_nothing": True}
    r = run_validation(request(f"m-{tag}", 1, parent, "uce", refs[:-1], work, spec, 0), refs[-1], **QUIET)
    est = lambda e: {"value": round(e.value, 3), "lower": round(e.lower, 3), "upper": round(e.upper, 3), "n": e.n}  # noqa: E731
    return {"forgetting": est(r.forgetting), "target_acc": est(r.target_acc),
            "evasion": {k: est(e) for k, e in r.evasion.items()}, "retain": est(r.retain),
            "retain_near": est(r.retain_by_distance["near"]) if "near" in r.retain_by_distance else None,
            "retain_far": est(r.retain_by_distance["far"]) if "far" in r.retain_by_distance else None,
            "leakage": est(r.leakage), "drift": est(r.drift),
            "attack": est(r.attack) if r.attack is not None else None}


def run_method(experiment: str, method: str, seeds: list[int], spec, work: Path) -> list[dict]:
    parent, concepts = EXPERIMENTS[experiment]
    rows = []
    for seed in seeds if not catalog.get(method).closed_form else seeds[:1]:
        t0 = time.time()
        refs, steps = progressive(concepts, method, spec, work, seed)
        rows.append({"experiment": experiment, "method": method, "seed": seed, "arm": "progressive",
                     "steps": steps, "seconds": round(time.time() - t0, 1),
                     **measure(parent, refs, spec, work, f"{experiment}-{method}-{seed}-p")})
        t0 = time.time()
        refs, steps = searched(concepts, method, spec, work, seed, f"{experiment}-{method}-{seed}-search")
        rows.append({"experiment": experiment, "method": method, "seed": seed, "arm": "search", "steps": steps,
                     "seconds": round(time.time() - t0, 1),
                     **measure(parent, refs, spec, work, f"{experiment}-{method}-{seed}-search")})
        t0 = time.time()
        refs = sequential(concepts, method, spec, work, seed)
        rows.append({"experiment": experiment, "method": method, "seed": seed, "arm": "sequential",
                     "seconds": round(time.time() - t0, 1),
                     **measure(parent, refs, spec, work, f"{experiment}-{method}-{seed}-sequential")})
        for arm, erased in (("one-shot", concepts), ("parent", [parent])):
            t0 = time.time()
            refs = oneshot(erased, method, work, seed, f"{experiment}-{method}-{seed}-{arm}")
            rows.append({"experiment": experiment, "method": method, "seed": seed, "arm": arm,
                         "seconds": round(time.time() - t0, 1),
                         **measure(parent, refs, spec, work, f"{experiment}-{method}-{seed}-{arm}")})
        print(f"  {experiment} {method} seed {seed}: done", flush=True)
    return rows


def cell(row: dict, key: str) -> str:
    e = row.get(key)
    return "-" if not e else f"{e['value']:.2f} [{e['lower']:.2f},{e['upper']:.2f}]"


def table(rows: list[dict]) -> None:
    cols = ["forgetting", "retain_near", "retain_far", "leakage", "drift", "attack"]
    print("| experiment | method | seed | arm | committed | " + " | ".join(cols) + " |")
    print("|---" * (5 + len(cols)) + "|")
    for r in rows:
        done = f"{sum(s['committed'] for s in r['steps'])}/{len(r['steps'])}" if "steps" in r else "-"
        print(f"| {r['experiment']} | {r['method']} | {r['seed']} | {r['arm']} | {done} | "
              + " | ".join(cell(r, c) for c in cols) + " |")


def summary(rows: list[dict]) -> list[dict]:
    """Per experiment, method and arm over training seeds: each measure's mean and its range across seeds."""
    cols = ["forgetting", "retain_near", "retain_far", "leakage", "drift", "attack"]
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        cells.setdefault((r["experiment"], r["method"], r["arm"]), []).append(r)
    out = []
    for (experiment, method, arm), runs in cells.items():
        row = {"experiment": experiment, "method": method, "arm": arm, "seeds": sorted(r["seed"] for r in runs),
               "committed": [f"{sum(s['committed'] for s in r['steps'])}/{len(r['steps'])}" for r in runs
                             if "steps" in r]}
        for c in cols:
            values = [r[c]["value"] for r in runs if r.get(c)]
            row[c] = {"mean": round(sum(values) / len(values), 3), "min": min(values), "max": max(values)} \
                if values else None
        out.append(row)
    return out


def print_summary(rows: list[dict]) -> None:
    cols = ["forgetting", "retain_near", "retain_far", "leakage", "drift", "attack"]
    print("| experiment | method | arm | seeds | committed | parent " + " | ".join(cols) + " |")
    print("|---" * (5 + len(cols)) + "|")
    for r in rows:
        def cell(e):
            return "-" if not e else (f"{e['mean']:.2f}" if e["min"] == e["max"] else
                                      f"{e['mean']:.2f} ({e['min']:.2f}-{e['max']:.2f})")
        print(f"| {r['experiment']} | {r['method']} | {r['arm']} | {len(r['seeds'])} | "
              f"{', '.join(r['committed']) or 'all at once'} | " + " | ".join(cell(r[c]) for c in cols) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--summarize", nargs="+", type=Path, metavar="JSON",
                    help="print the seed-averaged table of earlier runs' JSON files (rows merged) and exit")
    ap.add_argument("--experiment", default="both", choices=["variants", "superclass", "both"])
    ap.add_argument("--methods", default="uce,rece,mace,esd-x")
    ap.add_argument("--seeds", default="0,1,2", help="training seeds (fine-tunes; closed forms run once)")
    ap.add_argument("--gate-seeds", type=int, default=2, help="images per prompt in every gate and measure")
    ap.add_argument("--out", type=Path, default=Path("bench-results/variants.json"))
    args = ap.parse_args()
    if args.summarize:
        rows = [r for path in args.summarize for r in json.loads(path.read_text())]
        print_summary(summary(rows))
        return
    spec = dataclasses.replace(ValidationSpec(seeds=args.gate_seeds, judge="toyworld"), early_stop=False)
    work = Path(tempfile.mkdtemp(prefix="bench-variants-"))
    experiments = ["variants", "superclass"] if args.experiment == "both" else [args.experiment]
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = [r for e in experiments for m in args.methods.split(",") for r in run_method(e, m, seeds, spec, work)]
    table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    print(f"wrote {args.out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
