"""Model references: the embedded toy world, a local diffusers directory, or a hub id. Pure (os, pathlib).

Both sides resolve a reference the same way: the orchestrator to check it before a campaign
starts, the worker's loader (jobs/models/loader.py) to load it.
"""
from __future__ import annotations

import os
from pathlib import Path

from orchestrator.core.errors import ModelLoadError

TOY = "toyworld"
# The shipped toy world, beside the worker code that draws and judges it. ERASE_TOYWORLD_DIR points
# every command at another trained world (tests, retraining).
SHIPPED_TOYWORLD = Path(__file__).resolve().parents[2] / "jobs" / "toyworld" / "weights"


def toyworld_dir() -> Path:
    """The trained toy world in use: pipeline/, evaluator/ (and what else its build wrote)."""
    return Path(os.environ.get("ERASE_TOYWORLD_DIR") or SHIPPED_TOYWORLD)


def toy_pipeline_dir() -> Path:
    return toyworld_dir() / "pipeline"


def resolve(model: str) -> str:
    """The path or hub id a model reference points at."""
    return str(toy_pipeline_dir()) if model == TOY else model


def looks_local(ref: str) -> bool:
    """A reference that must be a directory here: it exists, or it cannot be a hub id (owner/name)."""
    return Path(ref).exists() or ref.startswith((".", "/", "~")) or ref.count("/") != 1


def check_model(model: str) -> None:
    """ModelLoadError (one line) when a local model directory is missing or not a pipeline; hub ids pass."""
    ref = Path(resolve(model))
    if model != TOY and not looks_local(str(ref)):
        return
    hint = " (train it with `erase toyworld train` or point ERASE_TOYWORLD_DIR at a trained world)" \
        if model == TOY else ""
    if not ref.is_dir():
        raise ModelLoadError(f"model {model!r}: no such directory {ref}{hint}")
    if not (ref / "model_index.json").is_file():
        raise ModelLoadError(f"model {model!r}: {ref} is not a diffusers pipeline directory (no model_index.json)")
    if model == TOY and not (ref.parent / "evaluator").is_dir():
        raise ModelLoadError(f"model {model!r}: no evaluator beside the pipeline in {ref.parent}{hint}")
