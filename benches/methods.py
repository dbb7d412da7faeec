"""Every erasure method on the same toy concept, validated by the same suite.

    python benches/methods.py [--concept square] [--methods uce,esd-x,uce:published,...] [--attack-steps N]

A method may name a catalog variant after a colon (uce:published); plain names run the tuned defaults.

Prints per method: seconds to erase, Forgetting, evasion, Retain (near/far), leakage, drift, attack
success (the erased concept regenerated through the candidate's own K/V: jobs/validation/attack.py),
optimized attack success (a soft prompt optimised against the candidate's denoising loss for --attack-steps
Adam steps, UnlearnDiffAtk's kind: jobs/validation/attack_optimized.py; 0 turns it off), and each attack's
seconds per gate; then the early-stop check: the same candidates gated with and
without early stop (images and decisions). Writes bench-results/methods.json (a list of rows: method,
seconds, forgetting, retain, evasion, leakage, drift, attack_success, attack_success_optimized, kl) and
bench-results/early_stop.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from erasecore.contracts import StepRequest, ValidationSpec  # noqa: E402
from erasecore.catalog import METHOD_NAMES  # noqa: E402
from jobs.step import run_step, run_validation  # noqa: E402

GATE = {"forgetting": 0.90, "retain": 0.95}
# Optimized-attack steps per gate. Measured on square (2 seeds, 5 tokens): ESD-x 0/14 from its prompts, 3/14 after
# 25 steps, 4/14 after 50 and 100; UCE 11/14 after 50. About 30 s of a gate on 2 CPU cores at 50.
ATTACK_STEPS = 50


def passes(report) -> bool:
    return report.forgetting.value >= GATE["forgetting"] and report.retain.value >= GATE["retain"]


def row(method: str, result) -> dict:
    r = result.report
    evasion = [e.value for e in r.evasion.values()]
    return {"method": method, "seconds": round(result.erase_seconds, 2), "forgetting": round(r.forgetting.value, 3),
            "forgetting_lower": round(r.forgetting.lower, 3), "retain": round(r.retain.value, 3),
            "retain_near": round(r.retain_by_distance.get("near", r.retain).value, 3),
            "retain_far": round(r.retain_by_distance.get("far", r.retain).value, 3),
            "evasion": round(sum(evasion) / max(1, len(evasion)), 3), "leakage": round(r.leakage.value, 3),
            "kl": round(r.kl, 4), "kl_base_noise": round(r.kl_base_noise, 4), "images": r.images_generated,
            "drift": round(r.drift.value, 3), **_attack(r), **_attack_optimized(r),
            "validate_seconds": round(result.validate_seconds, 2), "gate": "pass" if passes(r) else "fail"}


def _attack(r) -> dict:
    """attack_success with its Wilson bounds and cost; None where the attack could not run (with why)."""
    if r.attack is None:
        return {"attack_success": None, "attack_why_not": r.unjudged.get("attack", "")}
    return {"attack_success": round(r.attack.value, 3), "attack_lower": round(r.attack.lower, 3),
            "attack_upper": round(r.attack.upper, 3), "attack_images": r.attack.n,
            "attack_seconds": r.attack_seconds}


def _attack_optimized(r) -> dict:
    """attack_success_optimized with its Wilson bounds and cost; None where it did not run (with why)."""
    if r.attack_optimized is None:
        return {"attack_success_optimized": None, "attack_optimized_why_not": r.unjudged.get("attack:optimized", "")}
    return {"attack_success_optimized": round(r.attack_optimized.value, 3),
            "attack_optimized_lower": round(r.attack_optimized.lower, 3),
            "attack_optimized_upper": round(r.attack_optimized.upper, 3),
            "attack_optimized_seconds": r.attack_optimized_seconds}


def early_stop_check(results: dict, spec: ValidationSpec) -> list[dict]:
    """Gate each candidate again with early stop on; compare image counts and decisions."""
    out = []
    for method, res in results.items():
        again = replace(spec, early_stop=True, attack_optimized_steps=0)   # decides nothing: measured once is enough
        early = run_validation(replace(res.request, validation=again), res.delta, log=lambda *a: None)
        out.append({"method": method, "fixed_images": res.report.images_generated,
                    "early_images": early.images_generated, "early_stopped": early.early_stopped,
                    "same_decision": passes(early) == passes(res.report)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concept", default="square")
    ap.add_argument("--methods", default=",".join(METHOD_NAMES))
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("bench-results/methods.json"))
    ap.add_argument("--no-early-stop-check", action="store_true", help="skip gating each candidate a second time")
    ap.add_argument("--attack-steps", type=int, default=ATTACK_STEPS,
                    help="Adam steps of the optimized attack per gate (0: off)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-methods-"))
    # What preflight settles for the toy model, and the optimized attack's budget.
    spec = ValidationSpec(seeds=args.seeds, early_stop=False, judge="toyworld", attack_optimized_steps=args.attack_steps)
    results = {}
    for m in args.methods.split(","):
        method, _, variant = m.partition(":")
        hparams = {"variant": variant} if variant else {}
        req = StepRequest("bench", 1, 1, args.concept, method, hparams, "toyworld", (), str(work / m.replace(":", "-")),
                          validation=spec, cache_dir=str(work / "cache"))
        results[m] = run_step(req, log=lambda *a: None)
        print(f"  {m}: done in {results[m].erase_seconds:.1f}s", flush=True)
    rows = [row(m, r) for m, r in results.items()]
    cols = ["method", "seconds", "forgetting", "evasion", "retain", "retain_near", "retain_far", "leakage", "drift",
            "attack_success", "attack_seconds", "attack_success_optimized", "attack_optimized_seconds", "gate"]
    print(f"\nconcept {args.concept!r}, {rows[0]['images']} images per gate, base seed-to-seed KL {rows[0]['kl_base_noise']}")
    print(" ".join(f"{c:>11}" for c in cols))
    for r in rows:
        print(" ".join(f"{str(r.get(c)):>11}" for c in cols))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps([{**r, "concept": args.concept} for r in rows], indent=1))
    if args.no_early_stop_check:
        print(f"wrote {args.out}")
        shutil.rmtree(work, ignore_errors=True)
        return
    checks = early_stop_check(results, spec)
    clear = [c for c in checks if c["early_stopped"]]
    saved = 1 - sum(c["early_images"] for c in clear) / max(1, sum(c["fixed_images"] for c in clear))
    print(f"\nearly stop: {len(clear)}/{len(checks)} gates stopped early, "
          f"{saved:.0%} fewer images on those, same decision on {sum(c['same_decision'] for c in checks)}/{len(checks)}")
    for c in checks:
        print(f"  {c['method']:>6}: {c['fixed_images']} -> {c['early_images']} images, same decision {c['same_decision']}")
    early = args.out.with_name("early_stop.json")
    early.write_text(json.dumps({"concept": args.concept, "gates": checks, "image_saving_when_stopped": saved}, indent=1))
    print(f"wrote {args.out} and {early}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
