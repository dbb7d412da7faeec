"""Does the generic judge path agree with the toy evaluator? The tiny toy CLIP against the evaluator.

    python benches/judges.py [--seeds 4] [--clip DIR]    # prints a table, writes bench-results/judges.json

1. Per image, on held-out compositions (never rendered in training) drawn by the base toy pipeline:
   for every image, "is there a <shape>?" asked of the shape it was prompted with and of a sibling
   (a yes and a likely no), answered by the evaluator (its top shape) and by the CLIP judge
   (probability >= its threshold, calibrated on training-combination images as a gate calibrates on
   the base model's own). clip_vs_evaluator_image_agreement is the share of questions where they agree.
2. Per gate, on the same candidates: every attempt of the toy campaign (configs/campaigns/toy.yaml,
   run first into bench-results/judges-campaign unless it is there) validated twice, by the toy
   suite + evaluator and by the toy concept set's generic suite + CLIP; gate_decision_agreement is
   the share of attempts where the gate decides the same.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jobs.models.loader import load_pipeline  # noqa: E402
from jobs.step import run_validation  # noqa: E402
from jobs.toyworld.evaluator import Evaluator  # noqa: E402
from jobs.toyworld.prompts import Slot, full_slot, single  # noqa: E402
from jobs.toyworld.world import load_world  # noqa: E402
from jobs.validation.judges import load_judge  # noqa: E402
from jobs.validation.suite import Suite, SuiteItem  # noqa: E402
from jobs.validation.validator import generate  # noqa: E402
from erasecore.codec import from_json  # noqa: E402
from erasecore.concepts import load_concept_set  # noqa: E402
from erasecore.contracts import StepRequest, ValidationSpec  # noqa: E402
from erasecore.models import toyworld_dir  # noqa: E402
from orchestrator.gate import decide  # noqa: E402
from orchestrator.manifest import Manifest  # noqa: E402
from orchestrator.spec import load_spec  # noqa: E402

OUT = ROOT / "bench-results"
SPEC = ValidationSpec(seeds=1, inference_steps=20, guidance_scale=5.0)


def image_questions(world, specs, rng) -> list[tuple[int, str]]:
    """(image index, shape asked about): the prompted shape and one sibling per image."""
    out = []
    for i, s in enumerate(specs):
        siblings = [o for o in world.superclasses[world.superclass_of(s.shape)] if o != s.shape]
        out += [(i, s.shape), (i, siblings[int(rng.integers(len(siblings)))])]
    return out


def draw(pipe, world, specs, seeds: int) -> tuple[Suite, np.ndarray, list]:
    suite = Suite("bench", tuple(SuiteItem(single(world, full_slot(s)), "target", s.shape) for s in specs))
    keys = [(i, s) for s in range(seeds) for i in range(len(specs))]
    return suite, generate(pipe, suite, keys, SPEC), keys


def per_image(world, pipe, judge, evaluator, seeds: int) -> dict:
    rng = np.random.default_rng(0)
    shown = [s for s in world.training_specs() if s.size == "large"][::7]
    suite, images, keys = draw(pipe, world, shown, 1)
    calib = Suite("calib", tuple(SuiteItem(single(world, Slot(s.shape)), "target", s.shape) for s in shown))
    judge.calibrate(calib, judge.observe(calib, keys, images))   # thresholds from the base model's own images
    held = sorted(world.held_out, key=lambda s: (s.shape, s.colour, s.size, s.material))
    suite, images, keys = draw(pipe, world, held, seeds)
    tops = evaluator.judge(images).top("shape")
    probs = judge.posteriors(images)
    questions = image_questions(world, [held[k] for k, _ in keys], rng)
    agree = [(tops[i] == shape) == (probs[i][judge.labels.index(shape)] >= judge.thresholds.get(shape, 0.5))
             for i, shape in questions]
    return {"clip_vs_evaluator_image_agreement": float(np.mean(agree)), "image_questions": len(agree),
            "images": len(images)}


def campaign(storage: Path) -> Path:
    if not Manifest.exists(storage):
        subprocess.run([sys.executable, "-m", "launch.cli", "run", "configs/campaigns/toy.yaml",
                        f"storage_path={storage}", "tracking.mode=disabled"], cwd=ROOT, check=True)
    return storage


def per_gate(storage: Path, clip_dir: str) -> dict:
    manifest = Manifest.open(storage)
    spec = load_spec(str(storage / "spec.yaml"), [f"storage_path={storage}"])
    rows = []
    for a in manifest.history.attempts:
        if a.candidate is None:
            continue
        request = from_json(StepRequest, (manifest.attempt_path(a.step, a.concept, a.attempt) / "request.json").read_text())
        candidate = dataclasses.replace(a.candidate, path=str(storage / a.candidate.path))
        decisions = {}
        for judge, extra in (("toyworld", {}), ("clip", {"judge_model": clip_dir})):
            validation = dataclasses.replace(request.validation, judge=judge, **extra)
            req = dataclasses.replace(request, validation=validation, concepts_from="toyworld",
                                      out_dir=str(storage / "bench" / f"{a.step}-{a.attempt}-{judge}"))
            report = run_validation(req, candidate, log=lambda *x: None)
            decisions[judge] = (decide(report, spec.gate).verdict, report.forgetting.value, report.retain.value)
        rows.append({"step": a.step, "concept": a.concept, "attempt": a.attempt, "method": a.method, **decisions})
    agree = [r["toyworld"][0] == r["clip"][0] for r in rows]
    return {"gate_decision_agreement": float(np.mean(agree)) if agree else float("nan"), "gates": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--clip", default=str(toyworld_dir() / "clip"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.time()
    world = load_world()
    pipe = load_pipeline("toyworld")
    evaluator = Evaluator.load(world, toyworld_dir() / "evaluator")
    judge = load_judge("clip", load_concept_set("toyworld"), args.clip)
    result = per_image(world, pipe, judge, evaluator, args.seeds)
    result.update(per_gate(campaign(OUT / "judges-campaign"), args.clip))
    result["seconds"] = round(time.time() - t0, 1)
    OUT.mkdir(exist_ok=True)
    (OUT / "judges.json").write_text(json.dumps(result, indent=1))
    print(f"{'measure':<38} value")
    print(f"{'clip_vs_evaluator_image_agreement':<38} {result['clip_vs_evaluator_image_agreement']:.3f}"
          f"  ({result['image_questions']} questions on {result['images']} held-out images)")
    print(f"{'gate_decision_agreement':<38} {result['gate_decision_agreement']:.3f}  ({len(result['gates'])} gates)")
    print(f"\n{'step':<5}{'concept':<9}{'attempt':<8}{'method':<7}{'toyworld (verdict F R)':<28}clip (verdict F R)")
    for r in result["gates"]:
        t, c = r["toyworld"], r["clip"]
        print(f"{r['step']:<5}{r['concept']:<9}{r['attempt']:<8}{r['method']:<7}"
              f"{t[0]:<7} {t[1]:.2f} {t[2]:.2f}{'':<12}{c[0]:<7} {c[1]:.2f} {c[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
