"""Before/after grids: a few suite prompts drawn by the base model and by the erased model, side by side.

    keys = pick(suite)                                 # up to 3 prompts per group, seed 0
    write_grid(out_dir, suite, keys, before, after)    # -> grid.png + grid.json
    read_grid(out_dir)                                 # -> [GridRow(group, prompt, base, erased)]

grid.png has one row per prompt: a label (group, prompt) then the base and the erased image, upscaled
with nearest-neighbour so 32x32 renders stay legible. grid.json names each row's cells as pixel boxes
in grid.png, so a reader (the report, W&B tracking) can show the whole grid or one pair per row.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jobs.validation.suite import Suite

GRID_PNG = "grid.png"
GRID_JSON = "grid.json"
PER_GROUP = 3      # prompts per suite group: 8 groups -> 24 prompts, 48 extra images per gate
SEED = 0
PAD = 6
HEADER = 22
BG, INK, RULE = (255, 255, 255), (20, 20, 20), (200, 200, 200)


@dataclass(frozen=True)
class GridRow:
    """One row read back from a grid: the prompt and its two cells as PIL images."""

    group: str
    prompt: str
    base: Any
    erased: Any


def pick(suite: Suite, per_group: int = PER_GROUP, seed: int = SEED) -> list[tuple[int, int]]:
    """(item, seed) keys of the first `per_group` items of every group, in suite order: the same on every gate."""
    taken: dict[str, int] = {}
    keys = []
    for idx, item in enumerate(suite.items):
        if taken.get(item.group, 0) < per_group:
            taken[item.group] = taken.get(item.group, 0) + 1
            keys.append((idx, seed))
    return keys


def _font(size: int = 12):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:   # Pillow < 10.1 has only the bitmap font
        return ImageFont.load_default()


def draw_grid(labels: list[tuple[str, str]], before: np.ndarray, after: np.ndarray, scale: int = 4):
    """The grid image and each row's (base, erased) cell boxes; labels are (group, prompt) per row."""
    n, h, w = before.shape[:3]
    if after.shape != before.shape or len(labels) != n:
        raise ValueError(f"{len(labels)} labels for base {before.shape} and erased {after.shape}")
    cw, ch = w * scale, h * scale
    font, small = _font(12), _font(11)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max([probe.textlength(t, font=font) for g, p in labels for t in (g, p)] + [80])
    x_base = PAD + int(label_w) + PAD
    x_erased = x_base + cw + PAD
    width, height = x_erased + cw + PAD, HEADER + n * (ch + PAD) + PAD
    img = Image.new("RGB", (width, height), BG)
    d = ImageDraw.Draw(img)
    d.text((x_base, 4), "base", fill=INK, font=font)
    d.text((x_erased, 4), "erased", fill=INK, font=font)
    boxes = []
    for r, (group, prompt) in enumerate(labels):
        y = HEADER + r * (ch + PAD)
        if r and labels[r - 1][0] != group:
            d.line([(PAD, y - PAD // 2), (width - PAD, y - PAD // 2)], fill=RULE)
        d.text((PAD, y + 2), group, fill=(90, 90, 90), font=small)
        d.text((PAD, y + 18), prompt, fill=INK, font=font)
        cells = []
        for x, pixels in ((x_base, before[r]), (x_erased, after[r])):
            img.paste(Image.fromarray(pixels).resize((cw, ch), Image.NEAREST), (x, y))
            cells.append([x, y, x + cw, y + ch])
        boxes.append(cells)
    return img, boxes


def write_grid(out_dir: str | Path, suite: Suite, keys: list[tuple[int, int]], before: np.ndarray,
               after: np.ndarray, scale: int = 4) -> Path:
    """Draw the keys' base/erased pairs into <out_dir>/grid.png and describe its cells in grid.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = [(suite.items[i].group, suite.items[i].prompt.text) for i, _ in keys]
    img, boxes = draw_grid(labels, before, after, scale)
    rows = [{"group": g, "prompt": p, "item": i, "seed": s, "base": b, "erased": e}
            for (g, p), (i, s), (b, e) in zip(labels, keys, boxes)]
    meta = {"target": suite.target, "suite": suite.digest(), "scale": scale, "rows": rows}
    # Written then renamed: a report built while a gate runs never reads half a PNG.
    tmp_png, tmp_json = out / f".{GRID_PNG}.tmp", out / f".{GRID_JSON}.tmp"
    img.save(tmp_png, format="PNG")
    tmp_json.write_text(json.dumps(meta, indent=1))
    tmp_json.replace(out / GRID_JSON)
    tmp_png.replace(out / GRID_PNG)
    return out / GRID_PNG


def read_grid(out_dir: str | Path) -> list[GridRow]:
    """The rows of a written grid, each cell cropped out of grid.png; [] when the directory has none."""
    out = Path(out_dir)
    if not (out / GRID_JSON).is_file() or not (out / GRID_PNG).is_file():
        return []
    rows = json.loads((out / GRID_JSON).read_text())["rows"]
    with Image.open(out / GRID_PNG) as img:
        img = img.convert("RGB")
        return [GridRow(r["group"], r["prompt"], img.crop(tuple(r["base"])), img.crop(tuple(r["erased"])))
                for r in rows]
