"""uint8 RGB images -> a vision tower's normalised input, with the mean/std its checkpoint names.

CLIP and BLIP share this step; reading preprocessor_config.json ourselves keeps the judges off
transformers' image processors (which want torchvision for their default backend)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)   # OpenAI CLIP's, BLIP's too


def normalisation(directory: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The image mean/std the checkpoint's preprocessor_config.json names, else CLIP's own."""
    try:
        cfg = json.loads((directory / "preprocessor_config.json").read_text())
        return tuple(cfg["image_mean"]), tuple(cfg["image_std"])
    except (OSError, ValueError, KeyError):
        return MEAN, STD


def pixel_batch(images: np.ndarray, size: int, mean, std) -> torch.Tensor:
    """(N, 3, size, size) float32: bicubic resize, [0, 1], then (x - mean) / std per channel."""
    rows = []
    for image in images:
        resized = Image.fromarray(image).convert("RGB").resize((size, size), Image.BICUBIC)
        rows.append(torch.from_numpy(np.asarray(resized, np.float32) / 255.0).permute(2, 0, 1))
    x = torch.stack(rows)
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
