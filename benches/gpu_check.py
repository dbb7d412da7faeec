"""GPU check: real-size SD 1.5, SDXL and Z-Image (random weights, built from configs/models/reference_models.json,
nothing downloaded) run the project's own step (ESD-x; Z-Image: the LoRA reverse fine-tune as published, r 8 on
q/k/v) and a small gate's generation on CUDA, next to what `erase plan` estimates for the same step. Frozen
components (text encoders, VAE) are held as a step holds them: resources.frozen_precision auto, bf16 on CUDA.

    python benches/gpu_check.py                 # CUDA: sd15, sdxl, zimage; writes bench-results/gpu_check.json
    python benches/gpu_check.py --model toyworld --allow-cpu   # the same code path on the toy model, here

Printed per model: seconds per iteration of the step (ESD-x: 2 frozen forwards + 1 trained forward/backward
of the text-facing attention at the method's batch), seconds per generated image (the validator's generate,
fp32 denoiser, CFG), peak GPU memory of the step, and the planner's per-GPU estimate of that step. Without CUDA
it says so and exits 0 (CI never depends on it). Prompts go through a small toy tokenizer: the check
times the networks, not the text.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jobs.methods import registry  # noqa: E402
from jobs.methods.interface import EraseInputs  # noqa: E402
from jobs.models.inventory import build_on_meta, reference_inventories  # noqa: E402
from jobs.models.loader import load_pipeline  # noqa: E402
from jobs.models.precision import frozen_dtype, hold_frozen_in  # noqa: E402
from jobs.toyworld.tokenizer import build_tokenizer  # noqa: E402
from jobs.toyworld.world import load_world  # noqa: E402
from jobs.training.concept_prompts import text_concept_prompts  # noqa: E402
from jobs.validation.concept_suite import build_concept_suite  # noqa: E402
from jobs.validation.validator import generate  # noqa: E402
from erasecore import catalog  # noqa: E402
from erasecore.concepts import load_concept_set  # noqa: E402
from erasecore.contracts import ValidationSpec  # noqa: E402
from erasecore.inventory import REFERENCE_MODELS  # noqa: E402
from orchestrator.planning import memory_plan as mp  # noqa: E402

ITERATIONS, BATCH, GPU_GB = 5, 4, 80.0
METHOD = {"sd15": "esd-x", "sdxl": "esd-x", "zimage": "lora", "toyworld": "esd-x"}
# Z-Image at 1024 px: batch 1 in bf16 (the planner: 70 GiB; fp32 at batch 4 would need 336)
SETTINGS = {"zimage": {"batch": 1, "mixed_precision": "bf16"}}


def hparams(key: str) -> dict:
    return catalog.get(METHOD[key]).resolve({"steps": ITERATIONS, "batch": BATCH, **SETTINGS.get(key, {})})


def reference_pipeline(key: str, device: str):
    """A pipeline of random weights at the published architecture, on `device` (fp32, as a step loads it)."""
    from diffusers import (DDIMScheduler, FlowMatchEulerDiscreteScheduler, StableDiffusionPipeline,
                           StableDiffusionXLPipeline, ZImagePipeline)

    ref = json.loads(REFERENCE_MODELS.read_text())["models"][key]
    parts = {}
    for name, c in ref["components"].items():
        meta = build_on_meta(c["library"], c["class"], c["config"])
        parts[name] = meta.to_empty(device=device).float()
        for p in parts[name].parameters():
            torch.nn.init.normal_(p, std=0.02)
    if ref["pipeline"] == "ZImagePipeline":   # Qwen's byte-level BPE over the toy words, made offline
        from tests.fixtures.tiny_pipelines import tiny_qwen_tokenizer
        return ZImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), tokenizer=tiny_qwen_tokenizer(),
                              **parts)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_tokenizer(load_world(), Path(tmp))
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1)
    if ref["pipeline"] == "StableDiffusionXLPipeline":
        return StableDiffusionXLPipeline(tokenizer=tokenizer, tokenizer_2=tokenizer, scheduler=scheduler, **parts)
    return StableDiffusionPipeline(tokenizer=tokenizer, scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False, **parts)


def check(key: str, device: str) -> dict:
    pipe = load_pipeline("toyworld", device=device) if key == "toyworld" else reference_pipeline(key, device)
    pipe.set_progress_bar_config(disable=True)
    hold_frozen_in(pipe, frozen_dtype("auto", device))
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    method = METHOD[key]
    hp = hparams(key)
    inputs = EraseInputs("car", text_concept_prompts("car", ("truck",)), hp, log=lambda *a: None)
    t0 = time.time()
    out = registry.erase(method, pipe, inputs)
    step_s = out.stats["train_seconds"] / ITERATIONS
    erase_total = time.time() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    suite = build_concept_suite(load_concept_set("coco-objects"), "car", max_per_group=2)
    keys = [(i, 0) for i in range(min(8, len(suite.items)))]
    t1 = time.time()
    generate(pipe, suite, keys, ValidationSpec(seeds=1, inference_steps=20, batch_size=8))
    image_s = (time.time() - t1) / len(keys)
    planned = planner_estimate(key)
    return {"model": key, "device": device, "method": method, "s_per_iteration": round(step_s, 3),
            "erase_step_total_s": round(erase_total, 1), "s_per_image": round(image_s, 3),
            "peak_gpu_gib": round(peak, 2), "planned_gib": round(planned, 2) if planned else None}


def planner_estimate(key: str) -> float | None:
    if key == "toyworld":
        return None
    inv = reference_inventories()[key]
    return mp.estimate(inv, mp.step_settings(METHOD[key], hparams(key), frozen_precision="auto"),
                       GPU_GB).total / mp.GIB


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", help="sd15, sdxl, zimage (default all three) or toyworld")
    ap.add_argument("--allow-cpu", action="store_true", help="run on the CPU when there is no CUDA (toy model)")
    args = ap.parse_args()
    if not torch.cuda.is_available() and not args.allow_cpu:
        print("skipped: no CUDA device on this machine (run it where a GPU is; CI never depends on it)")
        return 0
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = [check(key, device) for key in (args.model or ["sd15", "sdxl", "zimage"])]
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(rows, indent=1))
    print(f"{'model':<9}{'device':<7}{'method':<7}{'s/iter':>8}{'s/image':>9}{'peak GiB':>10}{'planned GiB':>12}")
    for r in rows:
        print(f"{r['model']:<9}{r['device']:<7}{r['method']:<7}{r['s_per_iteration']:>8}{r['s_per_image']:>9}"
              f"{r['peak_gpu_gib']:>10}{str(r['planned_gib']):>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
