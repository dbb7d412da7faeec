"""Quality bars of the embedded toy world: evaluator accuracy and the base pipeline's accuracy.

    python benches/toyworld.py [--seeds 8]    # prints a table, writes bench-results/toyworld.json

Base prompts are the held-out (object, colour, size, material) combinations: never rendered in
training, so they measure composition rather than recall.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.models.loader import load_pipeline  # noqa: E402
from erasecore.models import toyworld_dir  # noqa: E402
from jobs.toyworld.evaluator import Evaluator, to_tensor  # noqa: E402
from jobs.toyworld.prompts import full_slot, single  # noqa: E402
from jobs.toyworld.render import place_single, render  # noqa: E402
from jobs.toyworld.world import ATTRIBUTE_KINDS, load_world  # noqa: E402
from jobs.validation.suite import Suite, SuiteItem  # noqa: E402
from jobs.validation.validator import generate  # noqa: E402
from erasecore.contracts import ValidationSpec  # noqa: E402

TARGETS = {"evaluator.clean.object_acc": 0.98, "evaluator.clean.colour_acc": 0.98, "evaluator.vae.object_acc": 0.95,
           "base.object_acc": 0.90, "base.colour_acc": 0.90}


def accuracies(evaluator, images, specs) -> dict[str, float]:
    v = evaluator.judge(images)
    out = {"object_acc": float(np.mean([p == s.shape for p, s in zip(v.top("shape"), specs)]))}
    for k in ATTRIBUTE_KINDS:
        out[f"{k}_acc"] = float(np.mean([p == s.attribute(k) for p, s in zip(v.top(k), specs)]))
    return out


def evaluator_bars(world, evaluator, vae, n: int) -> dict[str, float]:
    rng = np.random.default_rng(123)
    specs = [world.all_specs()[i] for i in rng.integers(len(world.all_specs()), size=n)]
    images = np.stack([render(world, place_single(world, s, rng)) for s in specs])
    with torch.no_grad():
        rec = vae.decode(vae.encode(to_tensor(images)).latent_dist.mean).sample.clamp(-1, 1)
    rec = ((rec.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().astype(np.uint8)
    out = {f"evaluator.clean.{k}": v for k, v in accuracies(evaluator, images, specs).items()}
    out.update({f"evaluator.vae.{k}": v for k, v in accuracies(evaluator, rec, specs).items()})
    return out


def base_bars(world, evaluator, pipe, seeds: int) -> dict:
    specs = sorted(world.held_out, key=lambda s: (s.shape, s.colour, s.size, s.material))
    suite = Suite("base", tuple(SuiteItem(single(world, full_slot(s)), "base", s.shape) for s in specs))
    keys = [(i, s) for s in range(seeds) for i in range(len(specs))]
    t0 = time.time()
    images = generate(pipe, suite, keys, ValidationSpec(seeds=seeds, inference_steps=25, guidance_scale=5.0))
    per_image = (time.time() - t0) / len(keys)
    truth = [specs[i] for i, _ in keys]
    out = {f"base.{k}": v for k, v in accuracies(evaluator, images, truth).items()}
    shapes = evaluator.judge(images).top("shape")
    out["base.per_object"] = {o: float(np.mean([p == o for p, t in zip(shapes, truth) if t.shape == o]))
                              for o in world.objects}
    out["base.prompts"], out["base.images"], out["seconds_per_image"] = len(specs), len(keys), per_image
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--renders", type=int, default=3000)
    ap.add_argument("--out", type=Path, default=Path("bench-results/toyworld.json"))
    args = ap.parse_args()
    world = load_world()
    evaluator = Evaluator.load(world, toyworld_dir() / "evaluator")
    pipe = load_pipeline("toyworld")
    results = evaluator_bars(world, evaluator, pipe.vae, args.renders)
    results.update(base_bars(world, evaluator, pipe, args.seeds))
    print(f"{'metric':32} {'value':>8} {'target':>8}")
    for k, v in results.items():
        if isinstance(v, float):
            t = TARGETS.get(k)
            mark = "" if t is None else ("  ok" if v >= t else "  BELOW")
            print(f"{k:32} {v:8.3f} {'' if t is None else f'{t:8.2f}'}{mark}")
    print("per-object base accuracy: " + ", ".join(f"{o} {a:.2f}" for o, a in results["base.per_object"].items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
