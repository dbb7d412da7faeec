"""Yield of an overnight list: how much of configs/campaigns/toy-long.yaml a gated campaign commits, and whether
what it commits holds up on a larger gate it never saw.

    .venv/bin/python benches/yield.py            # the first 12 concepts, in the campaign's order
    .venv/bin/python benches/yield.py --all      # all 44
    .venv/bin/python benches/yield.py --all --steps group --out bench-results/yield-group.json
                                                 # each object's colours erased in one gated step
    .venv/bin/python benches/yield.py --all --steps auto --out bench-results/yield-auto.json
                                                 # that step first, its colours one by one if it is refused

Runs the campaign as a user does (`erase run`, its search and gate as the YAML says, on a local Ray), then
measures every committed step again with a fixed gate: no early stop, no extension, about 260 images (the
suite's prompts x enough seeds), on fresh noise seeds, the model as committed at that step (base + every commit
up to it). That gate runs twice on two disjoint seed ranges: the first gives confirmation_false_commit_rate
(committed candidates it rejects), and its agreement with the second (reference_self_agreement) says how far
one such gate can be trusted to tell them apart at all. Writes bench-results/yield.json:

  committed_share                    concepts committed / concepts queued (a group step's members each count)
  final_sweep_rebounds               committed concepts the final sweep saw drawn again
  confirmation_false_commit_rate     share of committed candidates the fixed gate rejects
  reference_self_agreement           share of committed candidates on which the fixed gate agrees with its repeat
  rows                               per step: candidates tried, the chosen one, why
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from erasecore.concepts import erased_by  # noqa: E402
from erasecore.contracts import DeltaRef  # noqa: E402
from jobs.deltas import delta as deltas  # noqa: E402
from jobs.models.loader import load_pipeline  # noqa: E402
from jobs.validation.validator import for_request  # noqa: E402
from orchestrator.campaign import RunAttempt, step_request  # noqa: E402
from orchestrator.gate import decide  # noqa: E402
from orchestrator.manifest import Manifest  # noqa: E402
from orchestrator.preflight import preflight  # noqa: E402
from orchestrator.spec import load_spec  # noqa: E402

CAMPAIGN = REPO / "configs" / "campaigns" / "toy-long.yaml"
OUT = REPO / "bench-results" / "yield.json"
FIXED_IMAGES = 260
FIXED_OFFSETS = (50_000, 70_000)   # far from the gates' (0..) and the confirmations' (n x 1000) seeds
FIRST = 12


def run_campaign(concepts: list[str], root: Path, steps: str) -> Manifest:
    """`erase run` of the long campaign on these concepts, as a user runs it."""
    listed = "[" + ", ".join(f'"{c}"' for c in concepts) + "]"
    cmd = [str(REPO / ".venv" / "bin" / "erase"), "run", str(CAMPAIGN), f"concepts={listed}",
           f"storage_path={root}", "tracking.mode=disabled", *([f"steps={steps}"] if steps != "concept" else [])]
    done = subprocess.run(cmd, cwd=REPO, text=True, capture_output=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"erase run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return Manifest.open(root)


def fixed_gate(settled, manifest: Manifest, step: int, offset: int) -> tuple[bool, int]:
    """The committed model at `step` measured by the fixed gate: (passes, images drawn)."""
    spec, h = settled.spec, manifest.history
    commits = sorted(h.commits, key=lambda c: c.step)
    mine = next(c for c in commits if c.step == step)
    before = [c for c in commits if c.step < step]
    record = next(a for a in h.attempts_for(step) if a.attempt == mine.attempt)
    action = RunAttempt(step, mine.concept, mine.attempt, record.method, dict(record.hparams),
                        erased_by([c.concept for c in before]), tuple(c.delta for c in before))
    request = step_request(action, settled)
    quiet = {"log": lambda *a: None}
    _, suite = for_request(request, request.validation.judge, **quiet)   # the gate's own suite
    seeds = math.ceil(FIXED_IMAGES / max(1, len(suite.items)))
    fixed = dataclasses.replace(request.validation, seeds=seeds, early_stop=False, extend_seeds=0, seed_offset=offset)
    request = dataclasses.replace(request, validation=fixed)
    validator, suite = for_request(request, request.validation.judge, **quiet)
    # The gate's measurement alone (the step's views, attack and grids add nothing to its verdict).
    pipe = load_pipeline(request.model)
    base = validator.baseline(pipe, request.model, suite)
    deltas.stack(pipe, tuple(request.parents) + (DeltaRef(str(manifest.root / mine.delta.path), mine.delta.sha256),))
    report = validator.validate(pipe, suite, base)
    return decide(report, spec.gate).committed, report.images_generated


def concept_rows(manifest: Manifest, concepts: list[str]) -> list[dict]:
    """Per step (a concept, or a group step's members): every candidate tried (setting, gate, confirmation), the
    chosen one, the outcome's reason."""
    rows = []
    for step, concept in enumerate(concepts, 1):
        tried = [{"attempt": a.attempt, "method": a.method, "hparams": a.hparams,
                  "gate": a.decision.verdict if a.decision else a.status,
                  "confirmation": a.confirmation.verdict if a.confirmation else None,
                  "why": "; ".join(((a.confirmation if a.confirmation and not a.confirmation.committed
                                     else a.decision).reasons if a.decision else ())[:2])}
                 for a in manifest.history.attempts_for(step)]
        commit, outcome = manifest.history.commit_for(step), manifest.history.outcome_for(step)
        rows.append({"step": step, "concept": concept, "candidates": tried,
                     "chosen": commit.attempt if commit else None,
                     "outcome": outcome.outcome if outcome else "pending", "reason": outcome.reason if outcome else ""})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--all", action="store_true", help="every concept of the campaign (default: the first 12)")
    ap.add_argument("--first", type=int, default=FIRST, help="the first N concepts (default 12)")
    ap.add_argument("--keep", type=Path, help="run the campaign here and keep it (default: a temporary directory)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--steps", choices=("concept", "group", "auto"), default="concept",
                    help="group: concepts sharing a parent (an object's colours) erased in one gated step; auto: "
                         "that group step first, its members one at a time if it is refused")
    args = ap.parse_args()
    concepts = list(load_spec(str(CAMPAIGN)).concepts)
    concepts = concepts if args.all else concepts[:args.first]
    work = Path(tempfile.mkdtemp(prefix="yield-"))
    root = args.keep or work / "campaign"
    t0 = time.time()
    manifest = run_campaign(concepts, root, args.steps)
    campaign_s = time.time() - t0
    settled = preflight(load_spec(str(root / "spec.yaml"), [f"storage_path={root}"]))
    committed = sorted(c.step for c in manifest.history.commits)
    erased = erased_by([c.concept for c in manifest.history.commits])
    verdicts = {off: [fixed_gate(settled, manifest, k, off) for k in committed] for off in FIXED_OFFSETS}
    first, second = ([ok for ok, _ in verdicts[off]] for off in FIXED_OFFSETS)
    sweep = manifest.history.sweeps[-1] if manifest.history.sweeps else None
    result = {
        "concepts_queued": len(concepts), "concepts_committed": len(erased), "steps": len(settled.spec.concepts),
        "steps_committed": len(committed), "committed_share": len(erased) / len(concepts),
        "final_sweep_rebounds": len(sweep.rebounds) if sweep else None,
        "confirmation_false_commit_rate": (first.count(False) / len(first)) if first else None,
        "reference_self_agreement": (sum(a == b for a, b in zip(first, second)) / len(first)) if first else None,
        "fixed_gate_images": [n for _, n in verdicts[FIXED_OFFSETS[0]]],
        "attempts": len(manifest.history.attempts), "campaign_seconds": round(campaign_s, 1),
        "total_seconds": round(time.time() - t0, 1), "rows": concept_rows(manifest, list(settled.spec.concepts)),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"{'step':>4}  {'concept':<18} {'outcome':<10} {'tried':>5}  chosen")
    for r in result["rows"]:
        chosen = next((f"{c['method']} {json.dumps(c['hparams'])}" for c in r["candidates"]
                       if c["attempt"] == r["chosen"]), "-")
        print(f"{r['step']:>4}  {r['concept']:<18} {r['outcome']:<10} {len(r['candidates']):>5}  {chosen}")
    for key in ("committed_share", "final_sweep_rebounds", "confirmation_false_commit_rate", "reference_self_agreement",
                "campaign_seconds", "total_seconds"):
        print(f"{key}: {result[key]}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
