"""The sequential gate against a large fixed-N gate, on the same real toy-world candidates.

    python benches/gate.py [--concepts square,star,circle] [--max-prompts 24] [--seeds 2] [--ref-seeds 4]

Candidates per concept: the base model itself (nothing forgotten), UCE at its default strength and
at 0.5 and 0.25 of it (weak: near or below the forgetting threshold), UCE with the official
script's rows (damaging); on the first concept also a short ESD-x fine-tune (40 steps).

Sequential: the validator as a campaign runs it (early_stop on, `--seeds` per prompt as the budget,
seeds 0..seeds-1, then its extension of borderline open checks: seeds seeds..seeds+extend_seeds-1 of their
groups). Reference: every prompt at `--ref-seeds` further seeds (independent images), no
early stop, decided on point estimates. Both are decided by the same gate (default thresholds).
Also, on the same candidates: the sequential gate without its extension, and a repeat of the reference
on further seeds (how often a fixed-N gate agrees with itself: the ceiling for any gate's agreement).
Prints one row per candidate; writes bench-results/gate.json with decision_agreement (share of
candidates with the same verdict), image_ratio (sequential images / reference images),
budget_ratio (sequential images / its own budget), decision_agreement_without_extension,
image_ratio_without_extension and reference_self_agreement.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.deltas import delta as deltas  # noqa: E402
from jobs.models.loader import load_pipeline  # noqa: E402
from jobs.step import run_erase  # noqa: E402
from jobs.validation.validator import Validator, for_request, generate, stratified_keys  # noqa: E402
from erasecore.contracts import StepRequest, ValidationSpec  # noqa: E402
from orchestrator.gate import decide  # noqa: E402
from orchestrator.spec import GateThresholds  # noqa: E402

QUIET = {"log": lambda *a: None}
GATE = GateThresholds()
CERTIFIED = GateThresholds(rules={k: "certified" for k in GATE.rules})
VARIANTS = [("base", None, {}), ("uce", "uce", {}), ("uce x0.5", "uce", {"erase_scale": 0.5}),
            ("uce x0.25", "uce", {"erase_scale": 0.25}), ("uce published", "uce", {"variant": "published"})]
FIRST_ONLY = [("esd-x 40 steps", "esd-x", {"steps": 40})]


def candidates(concepts: list[str]):
    for i, concept in enumerate(concepts):
        for label, method, hparams in VARIANTS + (FIRST_ONLY if i == 0 else []):
            yield concept, label, method, hparams


def reference(validator: Validator, pipe, suite, base, first: int, ref_seeds: int):
    """The fixed-N gate on seeds first..first+ref_seeds-1 (images the sequential gate never saw, its
    extension included); its validator's spec covers them, so every image is paired with its base image."""
    t0 = time.time()
    keys = stratified_keys(suite, first + ref_seeds, first=first)
    seen = validator.judge.observe(suite, keys, generate(pipe, suite, keys, validator.spec))
    return validator.report(suite, seen, base, False, time.time() - t0)


def values(report) -> dict:
    return {"forgetting": round(report.forgetting.value, 3), "retain": round(report.retain.value, 3),
            "leakage": round(report.leakage.value, 3), "drift": round(report.drift.value, 3),
            "images": report.images_generated}


def measure(concept, label, method, hparams, args, work: Path, setups: dict) -> dict:
    seq_spec = ValidationSpec(seeds=args.seeds, max_prompts_per_group=args.max_prompts, early_stop=True,
                              judge="toyworld")
    first = args.seeds + seq_spec.extend_seeds   # the reference's first seed: after the sequential gate's
    # the reference and its repeat (the same fixed-N gate on further seeds: how often a gate of that size
    # agrees with itself, the ceiling for any smaller gate's agreement with it)
    ref_spec = dataclasses.replace(seq_spec, seeds=first + 2 * args.ref_seeds, early_stop=False)
    req = StepRequest("gate-bench", 1, 1, concept, method or "uce", hparams, "toyworld", (),
                      str(work / concept / label.replace(" ", "-")), validation=seq_spec, cache_dir=str(work / "cache"))
    if concept not in setups:   # one baseline per concept, covering both gates' seeds
        wide = dataclasses.replace(req, validation=ref_spec)
        v, suite = for_request(wide, "toyworld", **QUIET)
        setups[concept] = (suite, v.baseline(load_pipeline("toyworld"), "toyworld", suite), v.judge)
    suite, base, judge = setups[concept]
    pipe = load_pipeline("toyworld")
    t0 = time.time()
    if method:
        deltas.stack(pipe, (run_erase(req, **QUIET),))
    erase_s = time.time() - t0
    seq = Validator(judge, seq_spec, None).validate(pipe, suite, base)
    plain = Validator(judge, dataclasses.replace(seq_spec, extend_seeds=0), None).validate(pipe, suite, base)
    ref = reference(Validator(judge, ref_spec, None), pipe, suite, base, first, args.ref_seeds)
    again = reference(Validator(judge, ref_spec, None), pipe, suite, base, first + args.ref_seeds, args.ref_seeds)
    d_seq, d_ref, d_cert = decide(seq, GATE), decide(ref, GATE), decide(seq, CERTIFIED)
    d_plain, d_again = decide(plain, GATE), decide(again, GATE)
    return {"concept": concept, "candidate": label, "erase_seconds": round(erase_s, 1),
            "sequential": {**values(seq), "early_stopped": seq.early_stopped, "extended": list(seq.extended),
                           "verdict": d_seq.verdict,
                           "failed": list(d_seq.failed), "verdict_if_certified": d_cert.verdict,
                           "seconds": round(seq.seconds, 1)},
            "reference": {**values(ref), "verdict": d_ref.verdict, "failed": list(d_ref.failed),
                          "seconds": round(ref.seconds, 1)},
            "without_extension": {**values(plain), "verdict": d_plain.verdict, "failed": list(d_plain.failed)},
            "reference_repeat": {**values(again), "verdict": d_again.verdict, "failed": list(d_again.failed)},
            "budget": args.seeds * len(suite.items), "agree": d_seq.verdict == d_ref.verdict,
            "agree_without_extension": d_plain.verdict == d_ref.verdict,
            "reference_repeat_agrees": d_again.verdict == d_ref.verdict,
            "agree_if_certified": d_cert.verdict == d_ref.verdict}


def table(rows: list[dict]) -> None:
    head = ["concept", "candidate", "seq img", "stop", "seq verdict", "no-ext verdict", "ref img", "ref verdict",
            "ref F/R/L/D", "repeat verdict", "agree"]
    print(" | ".join(head))
    for r in rows:
        s, f = r["sequential"], r["reference"]
        stop = "early" if s["early_stopped"] else ("+" + ",".join(s["extended"]) if s["extended"] else "-")
        print(" | ".join([r["concept"], r["candidate"], f"{s['images']}/{r['budget']}", stop,
                          f"{s['verdict']} {','.join(s['failed'])}", r["without_extension"]["verdict"],
                          str(f["images"]), f"{f['verdict']} {','.join(f['failed'])}",
                          f"{f['forgetting']}/{f['retain']}/{f['leakage']}/{f['drift']}",
                          r["reference_repeat"]["verdict"], str(r["agree"])]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concepts", default="square,star,circle")
    ap.add_argument("--max-prompts", type=int, default=24, help="prompts per suite group (the campaign default)")
    ap.add_argument("--seeds", type=int, default=2, help="the sequential gate's budget: seeds per prompt")
    ap.add_argument("--ref-seeds", type=int, default=4, help="the reference gate's seeds per prompt (disjoint)")
    ap.add_argument("--out", type=Path, default=Path("bench-results/gate.json"))
    args = ap.parse_args()
    work, setups, rows = Path(tempfile.mkdtemp(prefix="bench-gate-")), {}, []
    t0 = time.time()
    for concept, label, method, hparams in candidates(args.concepts.split(",")):
        rows.append(measure(concept, label, method, hparams, args, work, setups))
        print(f"  {concept} {label}: done ({time.time() - t0:.0f}s)", flush=True)
    seq_images = sum(r["sequential"]["images"] for r in rows)
    summary = {"decision_agreement": round(sum(r["agree"] for r in rows) / len(rows), 3),
               "image_ratio": round(seq_images / sum(r["reference"]["images"] for r in rows), 3),
               "budget_ratio": round(seq_images / sum(r["budget"] for r in rows), 3),
               "decision_agreement_if_certified": round(sum(r["agree_if_certified"] for r in rows) / len(rows), 3),
               "decision_agreement_without_extension":
                   round(sum(r["agree_without_extension"] for r in rows) / len(rows), 3),
               "image_ratio_without_extension": round(sum(r["without_extension"]["images"] for r in rows) /
                                                      sum(r["reference"]["images"] for r in rows), 3),
               "reference_self_agreement": round(sum(r["reference_repeat_agrees"] for r in rows) / len(rows), 3),
               "candidates": len(rows), "early_stopped": sum(r["sequential"]["early_stopped"] for r in rows),
               "extended": sum(bool(r["sequential"]["extended"]) for r in rows),
               "seeds": args.seeds, "ref_seeds": args.ref_seeds, "max_prompts": args.max_prompts, "seconds": round(time.time() - t0, 1)}
    table(rows)
    print(json.dumps(summary))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**summary, "rows": rows}, indent=1))
    print(f"wrote {args.out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
