"""Render toy scenes (one object, or two side by side) to RGB arrays with ground truth.

Shapes are drawn as masks at 4x resolution and box-downsampled, so edges are anti-aliased.
Features are kept fat (>= ~2 latent pixels) so they survive the 8x8 latent round trip.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from jobs.toyworld.world import ObjectSpec, World

SUPER = 4  # supersampling factor


@dataclass(frozen=True)
class Placed:
    """An object and the centre of its bounding box, in canvas pixels."""

    spec: ObjectSpec
    cx: float
    cy: float


def _star(points: int, inner: float) -> list[tuple[float, float]]:
    out = []
    for i in range(points * 2):
        r = 1.0 if i % 2 == 0 else inner
        a = -math.pi / 2 + i * math.pi / points
        out.append((r * math.cos(a), r * math.sin(a)))
    return out


# Polygons in the unit box [-1, 1]^2 (y down).
POLYGONS: dict[str, list[tuple[float, float]]] = {
    "triangle": [(0, -1), (1, 0.9), (-1, 0.9)],
    "square": [(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)],
    "diamond": [(0, -1), (1, 0), (0, 1), (-1, 0)],
    "star": _star(5, 0.55),
    "cross": [(-0.33, -1), (0.33, -1), (0.33, -0.33), (1, -0.33), (1, 0.33), (0.33, 0.33),
              (0.33, 1), (-0.33, 1), (-0.33, 0.33), (-1, 0.33), (-1, -0.33), (-0.33, -0.33)],
    "arrow": [(-1, -0.35), (0.1, -0.35), (0.1, -0.9), (1, 0), (0.1, 0.9), (0.1, 0.35), (-1, 0.35)],
    "hourglass": [(-0.85, -1), (0.85, -1), (0.2, 0), (0.85, 1), (-0.85, 1), (-0.2, 0)],
    "house": [(0, -1), (1, -0.1), (0.75, -0.1), (0.75, 1), (-0.75, 1), (-0.75, -0.1), (-1, -0.1)],
}


def _draw_mask(shape: str, size_px: float) -> Image.Image:
    """A filled mask of `shape`, `size_px` wide, on its own square canvas at SUPER scale."""
    side = int(round(size_px * SUPER))
    img = Image.new("L", (side, side), 0)
    d = ImageDraw.Draw(img)
    h = side / 2

    def box(x0, y0, x1, y1):
        return [h + x0 * h, h + y0 * h, h + x1 * h - 1, h + y1 * h - 1]

    if shape in POLYGONS:
        d.polygon([(h + x * h, h + y * h) for x, y in POLYGONS[shape]], fill=255)
    elif shape == "circle":
        d.ellipse(box(-1, -1, 1, 1), fill=255)
    elif shape == "semicircle":
        d.pieslice(box(-1, -0.5, 1, 1.5), 180, 360, fill=255)
    elif shape == "crescent":
        d.ellipse(box(-1, -1, 1, 1), fill=255)
        d.ellipse(box(-0.35, -1.05, 1.35, 0.65), fill=0)
    elif shape == "heart":
        d.ellipse(box(-1, -0.9, 0.05, 0.15), fill=255)
        d.ellipse(box(-0.05, -0.9, 1, 0.15), fill=255)
        d.polygon([(h - 0.97 * h, h - 0.2 * h), (h + 0.97 * h, h - 0.2 * h), (h, h + 0.95 * h)], fill=255)
    else:
        raise ValueError(f"renderer has no recipe for shape {shape!r}")
    return img


def _outline(mask: Image.Image, stroke_px: int) -> Image.Image:
    if stroke_px <= 0:
        return mask
    k = 2 * stroke_px * SUPER + 1
    inner = mask.filter(ImageFilter.MinFilter(k))
    return Image.fromarray(np.clip(np.asarray(mask, np.int16) - np.asarray(inner, np.int16), 0, 255).astype(np.uint8))


def object_mask(world: World, placed: Placed) -> np.ndarray:
    """Coverage in [0, 1] of one placed object on the canvas."""
    spec = placed.spec
    size = world.sizes[spec.size]
    m = _outline(_draw_mask(spec.shape, size), world.strokes[spec.material])
    canvas = Image.new("L", (world.canvas_px * SUPER,) * 2, 0)
    x0 = int(round((placed.cx - size / 2) * SUPER))
    y0 = int(round((placed.cy - size / 2) * SUPER))
    canvas.paste(m, (x0, y0))
    small = canvas.resize((world.canvas_px,) * 2, Image.BOX)
    return np.asarray(small, np.float32) / 255.0


def render(world: World, objects: list[Placed]) -> np.ndarray:
    """Render placed objects to an HxWx3 uint8 image."""
    img = np.tile(np.asarray(world.background_rgb, np.float32), (world.canvas_px, world.canvas_px, 1))
    for p in objects:
        a = object_mask(world, p)[..., None]
        img = img * (1 - a) + a * np.asarray(world.colours[p.spec.colour], np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def place_single(world: World, spec: ObjectSpec, rng: np.random.Generator) -> list[Placed]:
    """One object at a random position that keeps it inside the canvas."""
    half = world.sizes[spec.size] / 2
    lo, hi = half + 1, world.canvas_px - half - 1
    return [Placed(spec, float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi)))]


def place_pair(world: World, left: ObjectSpec, right: ObjectSpec, rng: np.random.Generator) -> list[Placed]:
    """Two objects side by side: `left` in the left half, `right` in the right half."""
    n = world.canvas_px
    out = []
    for spec, x_centre in ((left, n / 4), (right, 3 * n / 4)):
        half = world.sizes[spec.size] / 2
        cx = float(np.clip(x_centre + rng.uniform(-1, 1), half, n - half))
        cy = float(rng.uniform(half + 1, n - half - 1))
        out.append(Placed(spec, cx, cy))
    return out


def halves(image: np.ndarray, background_rgb) -> tuple[np.ndarray, np.ndarray]:
    """Left and right halves of a pair scene, each re-centred on a full blank canvas."""
    n = image.shape[0]
    out = []
    for x0 in (0, n // 2):
        canvas = np.empty_like(image)
        canvas[...] = np.asarray(background_rgb, image.dtype)
        canvas[:, n // 4: n // 4 + n // 2] = image[:, x0: x0 + n // 2]
        out.append(canvas)
    return out[0], out[1]
