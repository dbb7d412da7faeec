"""`erase plan` on the published architectures: what each method needs per GPU, and what fits 24 / 80 GB.

    python benches/planner.py

Reads configs/models/reference_inventories.json (counted on the meta device from
configs/models/reference_models.json), plans each applicable method at its defaults (fp32 denoiser,
DDP, one worker) with the frozen text encoders and VAE in bf16 (resources.frozen_precision auto, what
a step on a GPU holds), prints a table and writes bench-results/planner.json with rows
{model, method, defaults_gib, plan_24, total_24_gib, plan_80, total_80_gib, plan_24_frozen_fp32,
total_24_frozen_fp32_gib}: the last two are the 24 GB plan with the frozen components in fp32, as
steps held them before. Estimates, not GPU measurements.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from erasecore.catalog import why_not  # noqa: E402
from erasecore.families import family_of  # noqa: E402
from erasecore import catalog  # noqa: E402
from erasecore.inventory import REFERENCE_INVENTORIES, ModelInventory  # noqa: E402
from orchestrator.planning import memory_plan as mp  # noqa: E402

METHODS = ("uce", "esd-x", "esd-u", "lora")
GPUS = (24, 80)


def defaults(method: str) -> dict:
    return catalog.get(method).defaults()


def verdict(inv: ModelInventory, s: mp.StepSettings, gb: float) -> tuple[str, float | None]:
    p = mp.plan(inv, [s], gb)
    step = p.steps[0]
    if not p.fits:
        return f"none fits (largest: {step.reason.rsplit('largest term: ', 1)[-1]})", None
    return short(p.overrides), step.chosen.total / mp.GIB


def short(overrides: list[str]) -> str:
    """resources.gradient_checkpointing=true, ... -> checkpointing, zero2-offload, bf16, batch 1x16."""
    kv = {o.split("=", 1)[0].split(".")[-1]: o.split("=", 1)[1] for o in overrides}
    words = ["checkpointing"] if "gradient_checkpointing" in kv else []
    words += [Path(kv["deepspeed_config"]).stem] if "deepspeed_config" in kv else []
    words += [kv["mixed_precision"]] if "mixed_precision" in kv else []
    words += [f"batch {kv['batch']}x{kv['grad_accum']}"] if "batch" in kv else []
    return ", ".join(words) or "as is"


def cell(plan: str, total: float | None) -> str:
    return f"{plan} ({total:.0f})" if total else plan


def main() -> None:
    invs = {name: ModelInventory(**doc) for name, doc in json.loads(REFERENCE_INVENTORIES.read_text()).items()}
    rows = []
    for name, inv in invs.items():
        for method in METHODS:
            family = family_of(inv.pipeline)
            if family is not None and why_not(method, family) is not None:
                continue   # refused at config time; a family no method is ported to is planned anyway
            s = mp.step_settings(method, defaults(method), frozen_precision="auto")
            row = {"model": name, "method": method, "defaults_gib": mp.estimate(inv, s, 80).total / mp.GIB}
            for gb in GPUS:
                row[f"plan_{gb}"], row[f"total_{gb}_gib"] = verdict(inv, s, gb)
            fp32 = mp.step_settings(method, defaults(method), frozen_precision="fp32")
            row["plan_24_frozen_fp32"], row["total_24_frozen_fp32_gib"] = verdict(inv, fp32, 24)
            rows.append(row)
    print("| model | method | defaults, GiB | one 24 GB GPU: plan (GiB) | one 80 GB GPU: plan (GiB) "
          "| 24 GB, frozen parts fp32 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        cells = [cell(r[f"plan_{k}"], r[f"total_{k}_gib"]) for k in ("24", "80")]
        old = cell(r["plan_24_frozen_fp32"], r["total_24_frozen_fp32_gib"])
        print(f"| {r['model']} | {r['method']} | {r['defaults_gib']:.0f} | {cells[0]} | {cells[1]} | {old} |")
    out = REPO / "bench-results" / "planner.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
