"""A campaign's committed model out to the tools people load models with: diffusers, LoRA, ComfyUI.

    export_campaign(storage_path, "diffusers")   # full pipeline = base + committed deltas, merged
    export_campaign(storage_path, "lora")        # one diffusers LoRA: pipe.load_lora_weights(dir)
    export_campaign(storage_path, "comfyui")     # one kohya-format .safetensors (ComfyUI, A1111)
    export_campaign(storage_path, "lora", per_concept=True)   # one named adapter per concept (adapters.py)

Only committed records are read (the manifest's truth), in step order, each delta verified
against its recorded sha256. Runs on the driver side and needs torch, so jobs.* is imported
inside the functions: importing this module stays as light as the rest of orchestrator/.
Beside every export an `export.json` names the campaign, steps, concepts and delta hashes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from erasecore.contracts import DeltaRef
from erasecore.errors import CampaignError
from orchestrator.manifest import CommitRecord, Manifest, atomic_write_text

FORMATS = ("diffusers", "lora", "comfyui")
INFO = "export.json"


class ExportError(CampaignError):
    """An export that cannot be made: unknown format, nothing committed, an existing output."""


@dataclass(frozen=True)
class ExportPlan:
    """What an export contains: the commits up to a step, and the base model they apply to."""

    campaign: str
    model: str
    commits: tuple[CommitRecord, ...]
    refs: tuple[DeltaRef, ...]          # absolute paths, step order

    @property
    def last_step(self) -> int:
        return self.commits[-1].step


def plan_export(storage_path: str | Path, upto: int | None = None) -> ExportPlan:
    """The committed deltas of a campaign up to step `upto` (all if None), and its base model."""
    manifest = Manifest.open(storage_path)
    if upto is not None and upto < 1:
        raise ExportError(f"--upto must be a step number >= 1, got {upto}")
    committed = sorted(manifest.history.commits, key=lambda c: c.step)
    if upto is not None and committed and upto > committed[-1].step:
        # A step past the last commit names no model this campaign has made: refused, never the full model.
        n, steps = len(committed), ", ".join(str(c.step) for c in committed)
        raise ExportError(f"campaign {manifest.campaign!r} has {n} commit{'s' * (n != 1)} (step{'s' * (n != 1)} "
                          f"{steps}); --upto {upto} is past the last committed step {committed[-1].step}")
    commits = tuple(c for c in committed if upto is None or c.step <= upto)
    if not commits:
        where = f" up to step {upto}" if upto is not None else ""
        raise ExportError(f"campaign {manifest.campaign!r} at {storage_path} has no committed step{where}; "
                          "nothing to export")
    model = yaml.safe_load(manifest.spec_yaml)["model"]
    refs = tuple(DeltaRef(str(manifest.root / c.delta.path), c.delta.sha256) for c in commits)
    return ExportPlan(manifest.campaign, model, commits, refs)


def check_format(fmt: str, per_concept: bool = False) -> None:
    """ExportError for a format this module does not write, or --per-concept with one it has no adapters in."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if per_concept and fmt != "lora":
        raise ExportError(f"--per-concept writes diffusers LoRA adapters: use it with --format lora, not {fmt}")


def default_out(storage_path: str | Path, fmt: str, plan: ExportPlan) -> Path:
    """<storage_path>/exports/<campaign>-step<k>-<fmt>[.safetensors]: one name per (format, step)."""
    name = f"{plan.campaign}-step{plan.last_step}-{fmt}"
    return Path(storage_path) / "exports" / (name + ".safetensors" if fmt == "comfyui" else name)


def export_campaign(storage_path: str | Path, fmt: str, out: Path | None = None, upto: int | None = None,
                    rank: int | None = None, skip_non_2d: bool = False, per_concept: bool = False) -> Path:
    """Write the campaign's committed model (steps 1..upto) in format `fmt`; return the written path.

    diffusers: `out` is a new directory holding the merged pipeline (base model loaded from the spec).
    lora: `out` is a directory (returned); writes pytorch_lora_weights.safetensors in it. comfyui: `out` is a
    .safetensors file (or a directory to put <campaign>-step<k>.safetensors in).
    LoRA formats: LoRA deltas are stacked exactly; if any delta is dense, `rank` defaults to full
    rank (exact, larger file), a smaller rank truncates by SVD. Dense changes that are not 2-D
    weights (norms, convolutions: ESD-u) cannot be LoRA: an error unless `skip_non_2d`.
    per_concept (lora only): `out` is a directory of one named adapter per commit (orchestrator/outputs/adapters.py).
    """
    check_format(fmt, per_concept)
    plan = plan_export(storage_path, upto)
    if per_concept:
        from orchestrator.outputs.adapters import export_adapters   # it imports this module: here, not at the top

        out = Path(out) if out is not None else default_out(storage_path, "lora-per-concept", plan)
        return export_adapters(plan, out, rank, skip_non_2d)
    out = Path(out) if out is not None else default_out(storage_path, fmt, plan)
    if fmt == "diffusers":
        written = _export_diffusers(plan, out)
        info = {}
    else:
        written, info = _export_lora(plan, fmt, out, rank, skip_non_2d)
    _write_info(plan, fmt, written, info)
    return written


def _export_diffusers(plan: ExportPlan, out: Path) -> Path:
    from jobs.deltas.delta import merge_to_checkpoint
    from jobs.models.loader import load_pipeline

    if out.exists():
        raise ExportError(f"{out} already exists; choose a new --out directory")
    pipe = load_pipeline(plan.model)
    return merge_to_checkpoint(pipe, plan.refs, out)


def _export_lora(plan: ExportPlan, fmt: str, out: Path, rank: int | None, skip_non_2d: bool) -> tuple[Path, dict]:
    from jobs.deltas.delta import load_delta
    from jobs.deltas.lora_export import DIFFUSERS_WEIGHT_NAME, export_diffusers_lora, export_kohya_lora

    loaded = [load_delta(ref.path, ref.sha256) for ref in plan.refs]   # verifies every hash
    if rank is None and any(meta.kind != "lora" for _, meta in loaded):
        rank = full_rank(loaded)
    if fmt == "lora":
        if (out / DIFFUSERS_WEIGHT_NAME).exists():
            raise ExportError(f"{out / DIFFUSERS_WEIGHT_NAME} already exists; choose a new --out directory")
        result = export_diffusers_lora(loaded, out, rank=rank, skip_non_2d=skip_non_2d)
    else:
        if out.suffix != ".safetensors":
            out = out / f"{plan.campaign}-step{plan.last_step}.safetensors"
        if out.exists():
            raise ExportError(f"{out} already exists; choose a new --out file")
        out.parent.mkdir(parents=True, exist_ok=True)
        result = export_kohya_lora(loaded, out, rank=rank, skip_non_2d=skip_non_2d)
    fit = result.fit
    info = {"rank": fit.rank, "alpha": fit.alpha, "sha256": result.sha256,
            "max_rel_error": fit.max_rel_error, "skipped": list(fit.skipped)}
    return (out if fmt == "lora" else Path(result.path)), info


def full_rank(loaded) -> int:
    """The rank at which every 2-D change of the summed deltas is reproduced exactly."""
    from jobs.deltas.delta import dense_change

    shapes = {key: change.shape for tensors, meta in loaded for key, change in dense_change(tensors, meta).items()
              if change.dim() == 2}
    if not shapes:
        raise ExportError("the committed deltas hold no 2-D weight change; export them with --format diffusers")
    return max(min(shape) for shape in shapes.values())


def _write_info(plan: ExportPlan, fmt: str, written: Path, extra: dict) -> None:
    # Directory exports carry it inside; a single .safetensors file gets a sidecar.
    path = written.with_suffix(".export.json") if fmt == "comfyui" else written / INFO
    doc = {"campaign": plan.campaign, "format": fmt, "base_model": plan.model, "upto_step": plan.last_step,
           "steps": [{"step": c.step, "concept": c.concept, "attempt": c.attempt, "delta_sha256": c.delta.sha256,
                      "spec_hash": c.spec_hash} for c in plan.commits], **extra}
    atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")
