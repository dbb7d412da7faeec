"""Draw a few prompts with the toy pipeline, save a grid, and print what the evaluator sees."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from jobs.toyworld.evaluator import Evaluator
from jobs.toyworld.tokenizer import check_prompt
from jobs.toyworld.world import load_world

DEFAULT_PROMPTS = ("a red triangle", "a large blue outline square", "a small yellow star",
                   "a green heart", "a red circle and a blue arrow", "a photo of a big crimson box")


def grid(images: np.ndarray, cols: int, scale: int = 4) -> Image.Image:
    n, h, w, _ = images.shape
    rows = -(-n // cols)
    canvas = np.zeros((rows * (h + 2), cols * (w + 2), 3), np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        canvas[r * (h + 2) + 1: r * (h + 2) + 1 + h, c * (w + 2) + 1: c * (w + 2) + 1 + w] = im
    return Image.fromarray(canvas).resize((canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST)


def showcase(prompts=DEFAULT_PROMPTS, seeds: int = 4, out: Path = Path("runs/showcase.png"), model: str = "toyworld",
             log=print) -> Path:
    from jobs.models.loader import load_pipeline
    from erasecore.models import toyworld_dir

    world = load_world()
    for p in prompts:
        check_prompt(world, p)
    pipe = load_pipeline(model)
    evaluator = Evaluator.load(world, toyworld_dir() / "evaluator")
    images = []
    for p in prompts:
        gens = [torch.Generator().manual_seed(s) for s in range(seeds)]
        im = pipe([p] * seeds, num_inference_steps=25, guidance_scale=5.0, generator=gens, height=32, width=32,
                  output_type="np").images
        im = np.clip(np.round(im * 255), 0, 255).astype(np.uint8)
        images.append(im)
        log(f"{p!r:42} -> {_verdicts(evaluator, im, ' and ' in p)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    grid(np.concatenate(images), cols=seeds).save(out)
    log(f"grid (rows = prompts, columns = seeds): {out}")
    return out


def _verdicts(evaluator: Evaluator, images: np.ndarray, is_pair: bool) -> str:
    def one(v, i):
        return " ".join(v.top(k)[i] for k in ("size", "colour", "material", "shape"))

    if is_pair:
        left, right = evaluator.judge_pairs(images)
        return "; ".join(f"{one(left, i)} + {one(right, i)}" for i in range(len(images)))
    v = evaluator.judge(images)
    return "; ".join(one(v, i) for i in range(len(images)))
