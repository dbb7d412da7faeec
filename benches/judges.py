"""Do the generic gate's suite and judges agree with the toy gate? Suite and judge measured apart.

    python benches/judges.py [--seeds 4] [--gate-concepts square,star,circle]
                             [--judges toyworld,toyworld-repeat,toyworld-set,clip,vqa]
    # prints a table, writes bench-results/judges.json
    python benches/judges.py --keep [--redo clip]   # gates only the judges bench-results/judges.json lacks
                                                    # (or --redo names); every other column is kept as it is

1. Per image, on held-out compositions (never rendered in training) drawn by the base toy pipeline:
   for every image, "is there a <shape>?" asked of the shape it was prompted with and of a sibling
   (a yes and a likely no), answered by the evaluator (its top shape) and by the CLIP judge
   (its thresholds calibrated on training-combination images as a gate calibrates on the base
   model's own). clip_vs_evaluator_image_agreement is the share of questions where they agree.
2. Per gate, on real candidates: every attempt of the toy campaign (configs/campaigns/toy.yaml, run
   first into bench-results/judges-campaign unless it is there) and the gate bench's candidates
   (benches/gate.py: UCE at 0, 0.25, 0.5 and 1 of its strength and the official script's rows on each
   concept, a short ESD-x on the first), each gated by the campaign's request and gate under several
   judges: the toy suite + evaluator (the truth), the same on other noise seeds ("toyworld-repeat": how
   often the truth agrees with its own repeat, the ceiling of every agreement below), the toy concept set's
   generic suite + the evaluator ("toyworld-set": the suite alone changed), + the toy CLIP, + the toy
   BLIP-VQA (where its weights are shipped). toy_gate_repeat_agreement, generic_evaluator_gate_agreement,
   clip_gate_agreement and vqa_gate_agreement are the shares of candidates whose verdict equals the toy
   gate's (gate_candidates of them); clip_generic_agreement compares CLIP with the evaluator on the same
   generic suite (the judge alone).
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
from jobs.deltas import delta as deltas  # noqa: E402
from jobs.step import run_erase  # noqa: E402
from jobs.toyworld.evaluator import Evaluator  # noqa: E402
from jobs.toyworld.prompts import Slot, full_slot, single  # noqa: E402
from jobs.toyworld.world import load_world  # noqa: E402
from jobs.validation.judges import load_judge  # noqa: E402
from jobs.validation.suite import Suite, SuiteItem  # noqa: E402
from jobs.validation.validator import for_request, generate  # noqa: E402
from erasecore.codec import from_json  # noqa: E402
from erasecore.concepts import load_concept_set  # noqa: E402
from erasecore.contracts import DeltaRef, StepRequest, ValidationSpec  # noqa: E402
from erasecore.models import toyworld_dir  # noqa: E402
from orchestrator.gate import decide  # noqa: E402
from orchestrator.manifest import Manifest  # noqa: E402
from orchestrator.spec import load_spec  # noqa: E402
from benches.gate import FIRST_ONLY as GATE_FIRST_ONLY, VARIANTS as GATE_VARIANTS  # noqa: E402

OUT = ROOT / "bench-results"
SPEC = ValidationSpec(seeds=1, inference_steps=20, guidance_scale=5.0)
# The toy gate itself on other noise seeds: how often a gate agrees with its own repeat on these candidates,
# the ceiling of every other judge's agreement (a candidate at a threshold goes either way on other images)
REPEAT, REPEAT_SEED_OFFSET = "toyworld-repeat", 1000
JUDGE_MODELS = {"clip": str(toyworld_dir() / "clip"), "vqa": str(toyworld_dir() / "vqa")}
AGREEMENTS = {"toyworld-set": "generic_evaluator_gate_agreement", "clip": "clip_gate_agreement",
              "vqa": "vqa_gate_agreement", REPEAT: "toy_gate_repeat_agreement"}


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
    _, images, keys = draw(pipe, world, held, seeds)
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


def campaign_candidates(storage: Path) -> list[tuple[dict, StepRequest, DeltaRef]]:
    """Every attempt of the toy campaign that made a candidate: its own request and delta."""
    manifest = Manifest.open(storage)
    out = []
    for a in manifest.history.attempts:
        if a.candidate is not None:
            path = manifest.attempt_path(a.step, a.concept, a.attempt) / "request.json"
            row = {"source": "campaign", "step": a.step, "concept": a.concept, "candidate": f"{a.method} #{a.attempt}"}
            out.append((row, from_json(StepRequest, path.read_text()),
                        dataclasses.replace(a.candidate, path=str(storage / a.candidate.path))))
    return out


def gate_bench_candidates(template: StepRequest, concepts: list[str], work: Path):
    """The gate bench's candidates (benches/gate.py), erased here as first steps under the campaign's request."""
    for i, concept in enumerate(concepts):
        for label, method, hparams in GATE_VARIANTS + (GATE_FIRST_ONLY if i == 0 else []):
            req = dataclasses.replace(template, step=1, attempt=1, concept=concept, method=method or "uce",
                                      hparams={"erase_scale": 0.0} if method is None else hparams, parents=(),
                                      erased_before=(), preserve=(), out_dir=str(work / concept / label.replace(" ", "-")))
            yield {"source": "gate bench", "step": 1, "concept": concept, "candidate": label}, req, \
                run_erase(req, log=lambda *x: None)


def judged_by(request: StepRequest, judge: str, storage: Path, row: dict) -> StepRequest:
    """The same request gated by another judge: the toy suite for "toyworld", the concept set's otherwise."""
    validation = dataclasses.replace(request.validation, judge=_real(judge), judge_model=JUDGE_MODELS.get(judge, ""),
                                     seed_offset=REPEAT_SEED_OFFSET if judge == REPEAT else 0)
    name = f"{row['source']}-{row['concept']}-{row['candidate']}-{judge}".replace(" ", "_").replace("#", "")
    return dataclasses.replace(request, validation=validation, out_dir=str(storage / "bench" / name),
                               concepts_from=request.concepts_from if _real(judge) == "toyworld" else "toyworld")


def _real(judge: str) -> str:
    return "toyworld" if judge == REPEAT else judge


def gated(request: StepRequest, judge: str, base_pipe, pipe):
    """The gate's own report (its validator: baseline cached, early stop, extension), without the views and
    the attack, which no verdict here reads."""
    validator, suite = for_request(request, _real(judge), log=lambda *x: None)
    return validator.validate(pipe, suite, validator.baseline(base_pipe, request.model, suite))


def _key(row: dict) -> tuple:
    return row["source"], row["step"], row["concept"], row["candidate"]


def per_gate(storage: Path, judges: list[str], gate_concepts: list[str], kept: dict[tuple, dict]) -> dict:
    """Every candidate gated under every judge; `kept` (candidate -> a row measured before) supplies the
    judges it already has."""
    spec = load_spec(str(storage / "spec.yaml"), [f"storage_path={storage}"])
    found = campaign_candidates(storage)
    candidates = found + list(gate_bench_candidates(found[0][1], gate_concepts, storage / "bench" / "erase"))
    base_pipe, rows = load_pipeline("toyworld"), []
    for row, request, delta in candidates:
        row.update({j: kept[_key(row)][j] for j in judges if j in kept.get(_key(row), {})})
        pipe = load_pipeline(request.model)
        deltas.stack(pipe, tuple(request.parents) + (delta,))
        for judge in [j for j in judges if j not in row]:
            report = gated(judged_by(request, judge, storage, row), judge, base_pipe, pipe)
            row[judge] = (decide(report, spec.gate).verdict, report.forgetting.value, report.retain.value,
                          report.leakage.value)
        rows.append(row)
        print(f"  {row['concept']} {row['candidate']}: " + ", ".join(f"{j} {row[j][0]}" for j in judges), flush=True)
    out = {"gate_candidates": len(rows), "gates": rows}
    for judge, key in AGREEMENTS.items():
        if judge in judges:
            out[key] = float(np.mean([r[judge][0] == r["toyworld"][0] for r in rows]))
    if {"clip", "toyworld-set"} <= set(judges):   # the judge alone: the same generic suite, CLIP vs the truth
        out["clip_generic_agreement"] = float(np.mean([r["clip"][0] == r["toyworld-set"][0] for r in rows]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--gate-concepts", default="square,star,circle", help="the gate bench's concepts")
    ap.add_argument("--judges", default=f"toyworld,{REPEAT},toyworld-set,clip,vqa")
    ap.add_argument("--keep", action="store_true", help="keep every column bench-results/judges.json has")
    ap.add_argument("--redo", default="", help="with --keep: judges whose columns are measured again")
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.time()
    world = load_world()
    judges = [j for j in args.judges.split(",") if j not in JUDGE_MODELS or Path(JUDGE_MODELS[j]).is_dir()]
    old = json.loads((OUT / "judges.json").read_text()) if args.keep and (OUT / "judges.json").exists() else {}
    redo = set(filter(None, args.redo.split(",")))
    for row in old.get("gates", []):
        for judge in redo:
            row.pop(judge, None)
    result = {} if "clip" in redo else \
        {k: old[k] for k in ("clip_vs_evaluator_image_agreement", "image_questions", "images") if k in old}
    if not result:
        judge = load_judge("clip", load_concept_set("toyworld"), JUDGE_MODELS["clip"])
        result = per_image(world, load_pipeline("toyworld"), judge,
                           Evaluator.load(world, toyworld_dir() / "evaluator"), args.seeds)
    result.update(per_gate(campaign(OUT / "judges-campaign"), ["toyworld"] + [j for j in judges if j != "toyworld"],
                           args.gate_concepts.split(","), {_key(r): r for r in old.get("gates", [])}))
    result["seconds"] = round(time.time() - t0 + old.get("seconds", 0.0), 1)
    OUT.mkdir(exist_ok=True)
    (OUT / "judges.json").write_text(json.dumps(result, indent=1))
    table(result, [j for j in judges if j != "toyworld"])
    return 0


def table(result: dict, judges: list[str]) -> None:
    print(f"{'measure':<38} value")
    print(f"{'clip_vs_evaluator_image_agreement':<38} {result['clip_vs_evaluator_image_agreement']:.3f}"
          f"  ({result['image_questions']} questions on {result['images']} held-out images)")
    for key in [*AGREEMENTS.values(), "clip_generic_agreement"]:
        if key in result:
            print(f"{key:<38} {result[key]:.3f}  ({result['gate_candidates']} gates)")
    print(f"\n{'concept':<8}{'candidate':<16}{'toyworld':<22}" + "".join(f"{j:<22}" for j in judges)
          + "  (verdict forgetting retain leakage)")
    for r in result["gates"]:
        cells = "".join(f"{r[j][0]:<8} {r[j][1]:.2f} {r[j][2]:.2f} {r[j][3]:.2f} " for j in ["toyworld", *judges])
        print(f"{r['concept']:<8}{r['candidate']:<16}{cells}")


if __name__ == "__main__":
    sys.exit(main())
