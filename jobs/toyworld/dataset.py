"""Rendered training pools: images with their prompts and ground truth (rendering is ~1 ms/image)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jobs.toyworld.prompts import Prompt, sample_training_prompt
from jobs.toyworld.render import halves, place_pair, place_single, render
from jobs.toyworld.world import ObjectSpec, World


@dataclass
class CaptionedPool:
    images: np.ndarray  # (N, 32, 32, 3) uint8
    prompts: list[Prompt]


def captioned_pool(world: World, n: int, seed: int) -> CaptionedPool:
    """Training scenes for the pipeline, never showing a held-out combination."""
    rng = np.random.default_rng(seed)
    allowed = set(world.training_specs())
    images, prompts = [], []
    for _ in range(n):
        prompt, specs = sample_training_prompt(world, rng, allowed)
        placed = place_pair(world, *specs, rng) if len(specs) == 2 else place_single(world, specs[0], rng)
        images.append(render(world, placed))
        prompts.append(prompt)
    return CaptionedPool(np.stack(images), prompts)


@dataclass
class LabelledPool:
    images: np.ndarray
    labels: dict[str, np.ndarray]  # head -> class index; -1 = no label (empty canvas)


def labelled_pool(world: World, n: int, seed: int, classes: dict[str, tuple[str, ...]]) -> LabelledPool:
    """Evaluator training images: single objects anywhere, pair halves, and empty canvases."""
    rng = np.random.default_rng(seed)
    specs = world.all_specs()
    images, rows = [], []
    for _ in range(n):
        u = rng.random()
        if u < 0.06:
            images.append(render(world, []))
            rows.append(None)
            continue
        spec = specs[int(rng.integers(len(specs)))]
        if u < 0.3:
            spec = ObjectSpec(spec.shape, spec.colour, "small", "solid")
            other = specs[int(rng.integers(len(specs)))]
            other = ObjectSpec(other.shape, other.colour, "small", "solid")
            left_first = rng.random() < 0.5
            pair = (spec, other) if left_first else (other, spec)
            img = render(world, place_pair(world, *pair, rng))
            images.append(halves(img, world.background_rgb)[0 if left_first else 1])
        else:
            images.append(render(world, place_single(world, spec, rng)))
        rows.append(spec)
    labels = {k: np.full(n, -1, np.int64) for k in classes}
    for i, spec in enumerate(rows):
        labels["shape"][i] = classes["shape"].index(spec.shape if spec else "nothing")
        if spec:
            for k in ("colour", "size", "material"):
                labels[k][i] = classes[k].index(spec.attribute(k))
    return LabelledPool(np.stack(images), labels)
