"""The toy world's judge: a small CNN that says which object, colour, size and material an image shows.

It plays the role a VQA model plays for Stable Diffusion ("is there a <concept> in the image?").
Pair scenes are judged half by half (see render.halves).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from jobs.toyworld.render import halves
from jobs.toyworld.world import ATTRIBUTE_KINDS, World

NOTHING = "nothing"


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU())


class EvaluatorNet(nn.Module):
    """Image in [-1, 1] (N,3,32,32) -> logits per head."""

    def __init__(self, head_sizes: dict[str, int], width: int = 32):
        super().__init__()
        self.features = nn.Sequential(_block(3, width), nn.MaxPool2d(2), _block(width, 2 * width),
                                      nn.MaxPool2d(2), _block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1),
                                      nn.Flatten())
        self.heads = nn.ModuleDict({k: nn.Linear(4 * width, n) for k, n in head_sizes.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.features(x)
        return {k: h(f) for k, h in self.heads.items()}


@dataclass
class Verdicts:
    """Posteriors per image; `classes[head]` names the columns of `probs[head]`."""

    classes: dict[str, tuple[str, ...]]
    probs: dict[str, np.ndarray]

    def top(self, head: str) -> list[str]:
        return [self.classes[head][i] for i in self.probs[head].argmax(1)]

    def shape_prob(self, shapes: tuple[str, ...]) -> np.ndarray:
        """Probability that the image shows any of `shapes` (a superclass sums its members)."""
        idx = [self.classes["shape"].index(s) for s in shapes]
        return self.probs["shape"][:, idx].sum(1)


def head_classes(world: World) -> dict[str, tuple[str, ...]]:
    out = {"shape": world.objects + (NOTHING,)}
    out.update({k: world.values(k) for k in ATTRIBUTE_KINDS})
    return out


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N,H,W,3) -> float (N,3,H,W) in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1)


class Evaluator:
    def __init__(self, world: World, net: EvaluatorNet):
        self.world, self.net = world, net.eval()
        self.classes = head_classes(world)
        self.weights_file: Path | None = None   # the file load() read: a gate's judge identity hashes it

    @classmethod
    def fresh(cls, world: World) -> "Evaluator":
        return cls(world, EvaluatorNet({k: len(v) for k, v in head_classes(world).items()}))

    @classmethod
    def load(cls, world: World, directory: Path) -> "Evaluator":
        meta = json.loads((Path(directory) / "evaluator.json").read_text())
        if {k: tuple(v) for k, v in meta["classes"].items()} != head_classes(world):
            raise ValueError(f"evaluator in {directory} was trained on a different world")
        ev = cls.fresh(world)
        ev.weights_file = Path(directory) / "evaluator.safetensors"
        ev.net.load_state_dict(load_file(str(ev.weights_file)))
        return ev

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.net.state_dict().items()},
                  str(directory / "evaluator.safetensors"))
        (directory / "evaluator.json").write_text(json.dumps({"classes": self.classes}, indent=1))

    @torch.no_grad()
    def judge(self, images: np.ndarray, batch: int = 256) -> Verdicts:
        """Posteriors for single-object images (uint8, N x 32 x 32 x 3)."""
        parts: dict[str, list[np.ndarray]] = {k: [] for k in self.classes}
        for i in range(0, len(images), batch):
            logits = self.net(to_tensor(images[i:i + batch]))
            for k, v in logits.items():
                parts[k].append(v.softmax(1).numpy())
        probs = {k: np.concatenate(v) if v else np.zeros((0, len(self.classes[k]))) for k, v in parts.items()}
        return Verdicts(self.classes, probs)

    def judge_pairs(self, images: np.ndarray) -> tuple[Verdicts, Verdicts]:
        """Posteriors for the left and right object of pair scenes."""
        split = [halves(im, self.world.background_rgb) for im in images]
        return self.judge(np.stack([l for l, _ in split])), self.judge(np.stack([r for _, r in split]))
