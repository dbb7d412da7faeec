"""Cross-attention maps of the erased concept's token and of an attribute token, base vs erased model.

The side-effects study of concept erasure shows an erased object's attribute ("red" in "a red star and a
blue circle") moving its attention to the other object; these maps show where each token looks, on one
fixed prompt and seed per gate, in the base model and in base + parents + candidate.

    probe = AttentionProbe(pipe, prompt, spec)            # the prompt and its two tokens (a provider's, or generic_prompt)
    probe.draw_base(pipe, cache, model)                   # before any delta is stacked (cached)
    probe.finish(pipe, out_dir)                           # -> attention.png + attention.json

attention.png: two rows (base, erased), each the image then one map per token over it. attention.json:
prompt, seed, tokens, seconds, and `skipped` (why there are no maps: families whose text and image
tokens share joint attention, SD3/Flux/Z-Image, have no per-token cross-attention to read).
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from jobs.models import attention_probe
from jobs.models.adapters import image_size
from jobs.models.targets import cross_attention_modules, denoiser
from jobs.models.text_embeddings import concept_positions
from jobs.validation.grids import _font

ATTENTION_PNG = "attention.png"
ATTENTION_JSON = "attention.json"
SEED = 0
SCALE = 4
PAD, HEADER, LABEL = 6, 20, 56


def generic_prompt(concept: str) -> tuple[str, str, str]:
    """A concept in a pair scene (its last word is the token watched), for a provider without a scene of its own
    (the toy world's: jobs/toyworld/provider.py)."""
    return f"a red {concept} and a blue ball", concept.split()[-1], "red"


class _MapSum:
    """Stands in for the probe's list: each recorded attention is reduced at once into per-token maps
    of the conditional half of the batch, so nothing grows with steps or layers."""

    def __init__(self, masks: torch.Tensor, batch: int, size: int):
        self.masks, self.batch, self.size = masks, batch, size   # masks (tokens, L)
        self.total = torch.zeros(masks.shape[0], size, size)
        self.count = 0

    def append(self, probs: torch.Tensor) -> None:
        for t in range(self.masks.shape[0]):
            rows = torch.zeros(self.batch, self.masks.shape[1], dtype=torch.bool)
            rows[-1] = self.masks[t]   # the prompt's row; the unconditional row (CFG) stays empty
            self.total[t] += attention_probe.concept_maps([probs.detach().cpu()], rows, self.size)[-1]
        self.count += 1


@torch.no_grad()
def token_maps(pipe, prompt: str, words: tuple[str, ...], spec, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """The image (H, W, 3 uint8) drawn for `prompt` and each word's attention map (n, H, W in [0, 1])."""
    _, net = denoiser(pipe)
    modules = cross_attention_modules(net)
    size = image_size(pipe)
    masks = torch.cat([concept_positions(pipe, [prompt], (w,)) for w in words]).cpu()
    acc = _MapSum(masks, 2 if spec.guidance_scale > 1 else 1, size)
    previous = attention_probe.install(modules, acc)
    try:
        out = pipe([prompt], num_inference_steps=spec.inference_steps, guidance_scale=spec.guidance_scale,
                   generator=[torch.Generator().manual_seed(seed)], height=size, width=size, output_type="np")
    finally:
        attention_probe.restore(modules, previous)
    maps = acc.total / max(1, acc.count)
    # Stretched to [0, 1] per token: at 32x32 every query attends to every token a little, and the
    # floor hides where a token looks most.
    low, high = maps.flatten(1).amin(1).view(-1, 1, 1), maps.flatten(1).amax(1).view(-1, 1, 1)
    maps = (maps - low) / (high - low).clamp_min(1e-12)
    image = np.clip(np.round(out.images[0] * 255), 0, 255).astype(np.uint8)
    return image, maps.numpy()


def no_maps_reason(pipe) -> str:
    """Why a pipeline has no per-token maps ("" when it has them)."""
    _, net = denoiser(pipe)
    if cross_attention_modules(net):
        return ""
    return (f"{type(net).__name__} has no cross-attention (text and image tokens share joint attention), "
            "so there is no per-token map to show")


def _overlay(image: np.ndarray, heat: np.ndarray) -> Image.Image:
    """The map in red over a grey copy of the image."""
    grey = image.astype(np.float32).mean(-1, keepdims=True).repeat(3, -1) * 0.5
    red = np.zeros_like(grey)
    red[..., 0] = 255 * heat
    return Image.fromarray(np.clip(grey + red * 0.8, 0, 255).astype(np.uint8))


def draw_attention(words: tuple[str, ...], rows: list[tuple[str, np.ndarray, np.ndarray]]) -> Image.Image:
    """Rows (label, image, maps): the image then one overlay per word, upscaled with nearest neighbour."""
    h, w = rows[0][1].shape[:2]
    cw, ch = w * SCALE, h * SCALE
    width = LABEL + (1 + len(words)) * (cw + PAD) + PAD
    img = Image.new("RGB", (width, HEADER + len(rows) * (ch + PAD) + PAD), (255, 255, 255))
    d, font = ImageDraw.Draw(img), _font(12)
    for c, title in enumerate(("image",) + tuple(f'"{w_}"' for w_ in words)):
        d.text((LABEL + c * (cw + PAD), 4), title, fill=(20, 20, 20), font=font)
    for r, (label, image, maps) in enumerate(rows):
        y = HEADER + r * (ch + PAD)
        d.text((PAD, y + ch // 2 - 6), label, fill=(20, 20, 20), font=font)
        cells = [Image.fromarray(image)] + [_overlay(image, maps[i]) for i in range(len(words))]
        for c, cell in enumerate(cells):
            img.paste(cell.resize((cw, ch), Image.NEAREST), (LABEL + c * (cw + PAD), y))
    return img


def write_meta(out_dir: str | Path, meta: dict) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{ATTENTION_JSON}.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    tmp.replace(out / ATTENTION_JSON)


class AttentionProbe:
    """One gate's attention maps. Never fails the gate: a failure is one log line and a `skipped` reason."""

    def __init__(self, pipe, prompt: tuple[str, str, str], spec, log):
        self.prompt, self.words = prompt[0], (prompt[1], prompt[2])
        self.spec, self.log = spec, log
        self.skipped = no_maps_reason(pipe)
        self.base: tuple[np.ndarray, np.ndarray] | None = None
        self.seconds = 0.0

    def draw_base(self, pipe, cache, model: str) -> None:
        if self.skipped:
            return
        t0 = time.time()
        try:
            name = "attention-" + hashlib.sha256(json.dumps(
                [cache.key(model, _Named(self.prompt), self.spec), self.words, SEED]).encode()).hexdigest()[:20]
            image, maps = cache.load_images(name + "-image"), cache.load_images(name + "-maps")
            if image is None or maps is None:
                image, maps = token_maps(pipe, self.prompt, self.words, self.spec)
                cache.save_images(name + "-image", image)
                cache.save_images(name + "-maps", maps)
            self.base = (image, maps)
        except Exception as e:   # noqa: BLE001 - maps are a picture, not a gate input
            self.skipped = f"base maps failed: {type(e).__name__}: {e}"
        self.seconds += time.time() - t0

    def finish(self, pipe, out_dir) -> None:
        meta = {"prompt": self.prompt, "seed": SEED, "tokens": list(self.words), "skipped": self.skipped}
        t0 = time.time()
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        if not self.skipped and self.base is not None:
            try:
                image, maps = token_maps(pipe, self.prompt, self.words, self.spec)
                png = draw_attention(self.words, [("base", *self.base), ("erased", image, maps)])
                tmp = Path(out_dir) / f".{ATTENTION_PNG}.tmp"
                png.save(tmp, format="PNG")
                tmp.replace(Path(out_dir) / ATTENTION_PNG)
            except Exception as e:   # noqa: BLE001
                meta["skipped"] = f"erased maps failed: {type(e).__name__}: {e}"
        self.seconds += time.time() - t0
        meta["seconds"] = round(self.seconds, 3)
        write_meta(out_dir, meta)
        self.log(f"attention maps: {meta['skipped'] or self.prompt!r}, {self.seconds:.1f}s")


class _Named:
    """What BaselineCache.key reads of a suite (its digest), for a single prompt."""

    def __init__(self, prompt: str):
        self.prompt = prompt

    def digest(self) -> str:
        return hashlib.sha256(self.prompt.encode()).hexdigest()[:16]
