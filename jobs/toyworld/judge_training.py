"""What the toy judges' training scripts (train_clip, train_vqa) share: their optimiser and how they are saved."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from jobs.toyworld.world import World, load_world


def start(seed: int, build_tokenizer) -> tuple[np.random.Generator, World, object]:
    """(the data's generator, the world, the tokenizer): torch seeded first, as every toy judge's run is, then
    the tokenizer built in a directory of its own (saved beside the weights at the end)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    world = load_world()
    with tempfile.TemporaryDirectory() as tmp:
        return rng, world, build_tokenizer(world, Path(tmp))


def one_cycle(model: torch.nn.Module, lr: float, steps: int):
    """(AdamW, its one-cycle schedule): weight decay 0.01, a tenth of the steps warming up to `lr`."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)


def save(model, tokenizer, out: Path) -> Path:
    """A `transformers` directory a judge loads as it loads a hub checkpoint: the model in eval mode, its tokenizer."""
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
