"""A tiny CLIP for the toy world: the `clip` judge's weights on the embedded default, trained here.

    python -m jobs.toyworld.train_clip [--out DIR] [--steps N]     # ~25 min on 2 cores, deterministic

The shipped weights (jobs/toyworld/weights/clip, 0.7 MB) are this script's output at its defaults:
95% top-1 object accuracy over the toy world's labels on clean renders (300 random objects).

Images are single-object renders, half of them passed through the toy pipeline's VAE (the blur a
generated image has); captions are toy prompts naming the object (or its superclass, or a synonym)
with some of its attributes. The loss is CLIP's symmetric contrastive loss with every caption that
describes an image counted as its positive (many images in a batch share a shape). Saved as a
`transformers` CLIP directory with the toy tokenizer, so the judge loads it like any hub checkpoint.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from jobs.toyworld.evaluator import to_tensor
from jobs.toyworld.prompts import SINGLE_TEMPLATES, Slot, single
from jobs.toyworld.render import place_single, render
from jobs.toyworld.tokenizer import MAX_LENGTH, build_tokenizer
from jobs.toyworld.world import ObjectSpec, World
from jobs.toyworld.judge_training import one_cycle, save, start
from erasecore.models import toyworld_dir

SEED = 0
WIDTH, LAYERS, HEADS, PROJECTION, PATCH = 64, 2, 4, 32, 4


def build_clip(vocab: int, tokenizer):
    from transformers import CLIPConfig, CLIPModel

    text = dict(vocab_size=vocab, hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_hidden_layers=LAYERS,
                num_attention_heads=HEADS, max_position_embeddings=MAX_LENGTH, projection_dim=PROJECTION,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    vision = dict(hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                  image_size=32, patch_size=PATCH, projection_dim=PROJECTION)
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=PROJECTION))


def caption(world: World, spec: ObjectSpec, rng: np.random.Generator) -> tuple[str, Slot]:
    """A prompt that describes `spec`: its object or superclass word, some of its attributes."""
    shape = world.superclass_of(spec.shape) if rng.random() < 0.2 else spec.shape
    slot = Slot(shape, colour=spec.colour if rng.random() < 0.5 else None,
                size=spec.size if rng.random() < 0.3 else None,
                material=spec.material if rng.random() < 0.3 else None)
    prompt = single(world, slot, template=int(rng.integers(len(SINGLE_TEMPLATES))), variant=int(rng.integers(2)))
    return prompt.text, slot


def pool(world: World, n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[ObjectSpec]]:
    specs = [world.all_specs()[int(i)] for i in rng.integers(len(world.all_specs()), size=n)]
    return np.stack([render(world, place_single(world, s, rng)) for s in specs]), specs


@torch.no_grad()
def through_vae(images: np.ndarray) -> np.ndarray:
    """The renders as the toy pipeline's autoencoder gives them back (what a generated image looks like)."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(toyworld_dir() / "pipeline" / "vae").eval()
    out = []
    for i in range(0, len(images), 256):
        x = to_tensor(images[i:i + 256])
        y = vae.decode(vae.encode(x).latent_dist.mean).sample
        out.append(((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def pixels(images: np.ndarray) -> torch.Tensor:
    """Scaled as the judge scales them (jobs/validation/judges/clip.py: CLIP's mean and std)."""
    from jobs.validation.judges.pixels import MEAN, STD

    x = torch.from_numpy(images.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    return (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def train(out: Path, steps: int = 2000, batch: int = 64, lr: float = 1e-3, n: int = 4000, log=print) -> Path:
    rng, world, tokenizer = start(SEED, build_tokenizer)
    model = build_clip(len(tokenizer), tokenizer)
    images, specs = pool(world, n, rng)
    images[n // 2:] = through_vae(images[n // 2:])
    x = pixels(images)
    opt, sched = one_cycle(model, lr, steps)
    model.train()
    for step in range(steps):
        idx = rng.integers(n, size=batch)
        texts, slots = zip(*(caption(world, specs[i], rng) for i in idx))
        ids = tokenizer(list(texts), padding="max_length", max_length=MAX_LENGTH, truncation=True,
                        return_tensors="pt")
        out_ = model(input_ids=ids.input_ids, attention_mask=ids.attention_mask, pixel_values=x[idx])
        positive = torch.tensor([[slot.covers(world, specs[i]) for slot in slots] for i in idx], dtype=torch.float32)
        loss = (_soft_ce(out_.logits_per_image, positive) + _soft_ce(out_.logits_per_text, positive.T)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"clip step {step} loss {loss.item():.3f}")
    return save(model, tokenizer, out)


def _soft_ce(logits: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against the uniform distribution over each row's positives."""
    target = positive / positive.sum(1, keepdim=True).clamp(min=1)
    return -(target * F.log_softmax(logits, dim=1)).sum(1).mean()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=toyworld_dir() / "clip")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"wrote {train(args.out, args.steps, args.batch, args.lr)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
