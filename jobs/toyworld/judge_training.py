"""What the toy judges' training scripts (train_clip, train_vqa) share: their optimiser and how they are saved."""
from __future__ import annotations

from pathlib import Path

import torch


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
