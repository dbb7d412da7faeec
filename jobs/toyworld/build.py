"""Train the toy world from scratch, deterministically: VAE, then evaluator, then UNet + text encoder.

    python -m jobs.toyworld.build                 # full run (~30 min on 2 cores), writes weights/
    python -m jobs.toyworld.build --scale 0.01 --out /tmp/tw   # a smoke run in seconds
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from jobs.toyworld.architecture import (ToyArchitecture, build_scheduler, build_text_encoder, build_unet,
                                        build_vae)
from jobs.toyworld.dataset import captioned_pool, labelled_pool
from jobs.toyworld.evaluator import Evaluator
from erasecore.models import toyworld_dir
from jobs.toyworld.tokenizer import build_tokenizer
from jobs.toyworld.train_evaluator import train_evaluator, with_reconstructions
from jobs.toyworld.train_pipeline import train_pipeline
from jobs.toyworld.train_vae import train_vae
from jobs.toyworld.world import World, load_world




@dataclass(frozen=True)
class BuildConfig:
    seed: int = 0
    pool_images: int = 40000
    vae_steps: int = 1200
    vae_batch: int = 32
    vae_lr: float = 1e-3
    evaluator_images: int = 30000
    evaluator_steps: int = 2000
    evaluator_batch: int = 64
    evaluator_lr: float = 2e-3
    unet_steps: int = 4500
    unet_batch: int = 64
    unet_lr: float = 1e-3
    arch: ToyArchitecture = ToyArchitecture(unet_channels=(32, 64), vae_channels=(16, 32, 32))

    def scaled(self, s: float) -> "BuildConfig":
        """Same recipe with every count scaled by `s` (at least 2): for smoke tests."""
        f = lambda n: max(2, int(n * s))  # noqa: E731
        return BuildConfig(self.seed, f(self.pool_images), f(self.vae_steps), self.vae_batch, self.vae_lr,
                           f(self.evaluator_images), f(self.evaluator_steps), self.evaluator_batch,
                           self.evaluator_lr, f(self.unet_steps), self.unet_batch, self.unet_lr, self.arch)


def save_pipeline(out: Path, unet, vae, text_encoder, tokenizer, scheduler) -> None:
    """Save in StableDiffusionPipeline layout. Weights are rounded to fp16 (what the world was calibrated with)
    and stored as fp32, so plain `StableDiffusionPipeline.from_pretrained(dir)` runs with no torch_dtype."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.to(torch.float16).to(torch.float32).save_pretrained(out, safe_serialization=True)


def _stage_vae(cfg: BuildConfig, pool, stage: Path, log):
    """Train the VAE, or reuse the one a previous (interrupted) build of the same config saved."""
    from diffusers import AutoencoderKL

    if (stage / "config.json").is_file():
        log(f"reusing the VAE in {stage}")
        vae = AutoencoderKL.from_pretrained(stage)
    else:
        vae = train_vae(build_vae(cfg.arch), pool.images, cfg.vae_steps, cfg.vae_batch, cfg.vae_lr, cfg.seed, log)
        vae.save_pretrained(stage)
    return vae.eval().requires_grad_(False)


def build(cfg: BuildConfig, out: Path, world: World | None = None, log=print) -> None:
    world = world or load_world()
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    pool = captioned_pool(world, cfg.pool_images, cfg.seed)
    log(f"rendered {len(pool.images)} captioned scenes ({time.time() - t0:.0f}s)")
    vae = _stage_vae(cfg, pool, out / "stages" / "vae", log)
    if not (out / "evaluator" / "evaluator.safetensors").is_file():
        evaluator = Evaluator.fresh(world)
        lab = with_reconstructions(labelled_pool(world, cfg.evaluator_images, cfg.seed + 1, evaluator.classes), vae)
        train_evaluator(evaluator, lab, cfg.evaluator_steps, cfg.evaluator_batch, cfg.evaluator_lr, cfg.seed, log)
        evaluator.save(out / "evaluator")
    tokenizer = build_tokenizer(world, out / "vocab")
    unet, text = train_pipeline(build_unet(cfg.arch), build_text_encoder(cfg.arch, len(tokenizer)), tokenizer,
                                build_scheduler(), vae, pool, steps=cfg.unet_steps, batch=cfg.unet_batch,
                                lr=cfg.unet_lr, seed=cfg.seed, log=log)
    save_pipeline(out / "pipeline", unet, vae, text, tokenizer, build_scheduler())
    shutil.rmtree(out / "stages", ignore_errors=True)
    (out / "build.json").write_text(json.dumps({"config": asdict(cfg), "seconds": time.time() - t0}, indent=1))
    log(f"toy world written to {out} in {time.time() - t0:.0f}s")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=toyworld_dir())
    ap.add_argument("--scale", type=float, default=1.0, help="scale every step/image count (smoke runs)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = BuildConfig(seed=args.seed)
    build(cfg.scaled(args.scale) if args.scale != 1.0 else cfg, args.out)


if __name__ == "__main__":
    main()
