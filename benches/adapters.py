"""What switching one per-concept adapter off means in a progressive campaign, on a committed toy campaign.

    python benches/adapters.py [CAMPAIGN_DIR] [--seeds 2]     # default runs/toy (make run, or
                                                              # erase run configs/campaigns/toy.yaml storage_path=...)

Exports the campaign's commits as per-concept adapters (erase export --format lora --per-concept) and, for each
committed concept k, draws k's gate target prompts (and every later concept's) with four models:
  base     the base model (every adapter off);
  on       every adapter on: the committed model;
  off      every adapter on but k's: base + every committed delta but k's, the later ones erased on a model with k;
  without  the campaign truly without step k: the deltas before k, then each later committed step erased again on
           that model from its own request.json (same method, hyperparameters and seed), so no later delta saw k.
           For the last step no later step exists: it is the committed model up to k-1 (export --upto k-1).
Prints per k the toy evaluator's drawn rate of k on its prompts under each model, the mean absolute pixel difference
(0-255) of off vs without and of on vs base (the size of an erasure, for scale), and the later concepts' drawn rates
under off and without (do they stay erased?). Also erases each later step again on its own parents: when that gives
its committed delta byte for byte, `without` differs from `off` by the step left out alone, not by changed code.
Writes bench-results/adapters.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from erasecore.codec import from_json  # noqa: E402
from erasecore.contracts import StepRequest, ValidationSpec  # noqa: E402
from erasecore.models import toyworld_dir  # noqa: E402
from jobs.deltas import delta as deltas  # noqa: E402
from jobs.models.loader import load_pipeline  # noqa: E402
from jobs.step import run_erase  # noqa: E402
from jobs.toyworld.evaluator import Evaluator  # noqa: E402
from jobs.toyworld.suite import build_suite  # noqa: E402
from jobs.toyworld.world import load_world  # noqa: E402
from jobs.validation.validator import generate  # noqa: E402
from orchestrator.outputs.export import export_campaign, plan_export  # noqa: E402

QUIET = {"log": lambda *a: None}


class Drawer:
    """Each concept's gate target prompts x seeds, drawn and judged as the gate does."""

    def __init__(self, seeds: int):
        self.world = load_world()
        self.evaluator = Evaluator.load(self.world, toyworld_dir() / "evaluator")
        self.spec = ValidationSpec(seeds=seeds, judge="toyworld")   # the gate's steps, guidance and noise seeds

    def images(self, pipe, concept: str) -> np.ndarray:
        suite = build_suite(self.world, concept)
        keys = [(i, s) for s in range(self.spec.seeds) for i, item in enumerate(suite.items) if item.group == "target"]
        return generate(pipe, suite, keys, self.spec)

    def drawn(self, concept: str, images: np.ndarray) -> float:
        """Share of images the evaluator sees the concept in (a member of it, for a superclass)."""
        members = self.world.members(self.world.concept(concept))
        return float(np.mean([s in members for s in self.evaluator.judge(images).top("shape")]))


def pixels(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def erase_again(ref, parents: list, out: Path, leave_out: str = ""):
    """The committed step of `ref` erased again from its own request.json, on `parents` instead of its own."""
    request = from_json(StepRequest, (Path(ref.path).parent / "request.json").read_text())
    request = replace(request, parents=tuple(parents), out_dir=str(out), cache_dir=str(out.parent / "cache"),
                      erased_before=tuple(c for c in request.erased_before if c != leave_out))
    return run_erase(request, **QUIET)


def without_step(plan, k: int, work: Path) -> list:
    """The campaign's deltas with step k's left out and every later step erased again on the model without it."""
    chain = list(plan.refs[:k])
    for commit, ref in zip(plan.commits[k + 1:], plan.refs[k + 1:]):
        out = work / f"without-{plan.commits[k].step}" / f"step{commit.step}"
        chain.append(erase_again(ref, chain, out, leave_out=plan.commits[k].concept))
    return chain


def replays(plan, work: Path) -> dict[int, bool]:
    """Whether each later step, erased again on its own parents with today's code, is its committed delta byte for
    byte: if so, `without` differs from `off` only by the step left out, not by the code."""
    return {c.step: erase_again(ref, list(plan.refs[:i]), work / "replay" / f"step{c.step}").sha256 == ref.sha256
            for i, (c, ref) in enumerate(zip(plan.commits, plan.refs)) if i > 0}


def compare(root: Path, drawer: Drawer, work: Path) -> tuple[list[dict], dict[int, bool]]:
    plan = plan_export(root)
    out = export_campaign(root, "lora", work / "adapters", per_concept=True)
    listing = json.loads((out / "adapters.json").read_text())["adapters"]
    names = [a["adapter"] for a in listing]
    pipe = load_pipeline(plan.model)
    for a in listing:
        pipe.load_lora_weights(str(out / a["adapter"]), adapter_name=a["adapter"])
    concepts = [c.concept for c in plan.commits]
    pipe.set_adapters(names)
    on = {c: drawer.images(pipe, c) for c in concepts}
    pipe.disable_lora()
    base = {c: drawer.images(pipe, c) for c in concepts}
    pipe.enable_lora()
    rows = []
    for k, concept in enumerate(concepts):
        pipe.set_adapters([n for i, n in enumerate(names) if i != k])
        watched = concepts[k:]   # k and the concepts erased after it
        off = {c: drawer.images(pipe, c) for c in watched}
        truly = load_pipeline(plan.model)
        deltas.stack(truly, without_step(plan, k, work))
        without = {c: drawer.images(truly, c) for c in watched}
        rows.append({"step": plan.commits[k].step, "concept": concept, "adapter": names[k], "images": len(on[concept]),
                     "later_steps_erased_again": len(concepts) - k - 1,
                     "drawn": {arm: drawer.drawn(concept, imgs[concept])
                               for arm, imgs in (("base", base), ("on", on), ("off", off), ("without", without))},
                     "pixels_off_vs_without": pixels(off[concept], without[concept]),
                     "pixels_off_vs_on": pixels(off[concept], on[concept]),
                     "pixels_on_vs_base": pixels(on[concept], base[concept]),
                     "later": {c: {"on": drawer.drawn(c, on[c]), "off": drawer.drawn(c, off[c]),
                                   "without": drawer.drawn(c, without[c]),
                                   "pixels_off_vs_without": pixels(off[c], without[c]),
                                   "pixels_off_vs_on": pixels(off[c], on[c])} for c in watched[1:]}})
    return rows, replays(plan, work)


def show(rows: list[dict]) -> None:
    print(f"{'concept':>10} {'step':>4} {'images':>6} | drawn: {'base':>5} {'on':>5} {'off':>5} {'without':>7} | "
          f"pixels: {'off~without':>11} {'off~on':>7} {'on~base':>7}")
    for r in rows:
        d = r["drawn"]
        print(f"{r['concept']:>10} {r['step']:>4} {r['images']:>6} |        {d['base']:5.2f} {d['on']:5.2f} "
              f"{d['off']:5.2f} {d['without']:7.2f} |         {r['pixels_off_vs_without']:11.2f} "
              f"{r['pixels_off_vs_on']:7.2f} {r['pixels_on_vs_base']:7.2f}")
        for c, x in r["later"].items():
            print(f"{'':>10}   later {c}: drawn on {x['on']:.2f}, off {x['off']:.2f}, without {x['without']:.2f}; "
                  f"pixels off~without {x['pixels_off_vs_without']:.2f}, off~on {x['pixels_off_vs_on']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("campaign", nargs="?", type=Path, default=Path("runs/toy"))
    ap.add_argument("--seeds", type=int, default=2, help="images per prompt (the toy campaign's gate uses 2)")
    ap.add_argument("--out", type=Path, default=Path("bench-results/adapters.json"))
    args = ap.parse_args()
    if not (args.campaign / "manifest.json").is_file():
        sys.exit(f"error: no campaign at {args.campaign}: run `make run` (runs/toy) or "
                 f"`erase run configs/campaigns/toy.yaml storage_path={args.campaign}` first")
    work = Path(tempfile.mkdtemp(prefix="bench-adapters-"))
    t0 = time.time()
    try:
        rows, replayed = compare(args.campaign, Drawer(args.seeds), work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"campaign {args.campaign}, {args.seeds} seeds per target prompt, {time.time() - t0:.0f} s")
    show(rows)
    print("later steps erased again on their own parents reproduce their commits byte for byte: "
          + (", ".join(f"step {k} {'yes' if same else 'NO'}" for k, same in replayed.items()) or "no later steps"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"campaign": str(args.campaign), "seeds": args.seeds, "rows": rows,
                                    "replay_reproduces_commit": {str(k): v for k, v in replayed.items()}}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
