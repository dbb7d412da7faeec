"""Model references: the embedded toy world, a local diffusers directory, or a hub id. Pure (json, os, pathlib).

Both sides resolve a reference the same way: the orchestrator to check it before a campaign
starts, the worker's loader (jobs/models/loader.py) to load it. A hub id is looked up in the local
Hugging Face cache by its documented layout (HF_HUB_CACHE, else $HF_HOME/hub, else
~/.cache/huggingface/hub; models--<owner>--<name>/refs/main names the snapshot), never on the network.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from erasecore.errors import ModelLoadError, ModelNotCachedError

TOY = "toyworld"
# The shipped toy world, beside the worker code that draws and judges it. ERASE_TOYWORLD_DIR points
# every command at another trained world (tests, retraining).
SHIPPED_TOYWORLD = Path(__file__).resolve().parents[1] / "jobs" / "toyworld" / "weights"


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


def hub_cache_dir() -> Path:
    """The local Hugging Face hub cache, as huggingface_hub finds it."""
    return Path(os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"), "hub"))


def hub_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot of a hub model that refs/main names, if it holds a model_index.json; no network."""
    root = hub_cache_dir() / f"models--{repo_id.replace('/', '--')}"
    try:
        revision = (root / "refs" / "main").read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    snapshot = root / "snapshots" / revision
    return snapshot if revision and (snapshot / "model_index.json").is_file() else None


# Weight files of a component directory; components the loader leaves out need none (jobs/models/loader.py).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
NOT_LOADED = ("safety_checker", "feature_extractor")


def check_hub_model(model: str, source: str = "local", weights: bool = True) -> None:
    """A hub id must be in the local Hugging Face cache unless the workers fetch it (source "workers");
    ModelNotCachedError (one line) otherwise. With `weights`, every component with a config.json must
    have its weight files there too (`erase plan` reads configs only). Local directories and the toy
    world pass (check_model says what is wrong with those)."""
    if source == "workers" or model == TOY or looks_local(model):
        return
    fix = f"download it first (`hf download {model}`) or set model_source: workers to let the workers fetch it"
    snapshot = hub_snapshot(model)
    if snapshot is None:
        raise ModelNotCachedError(f"model {model!r} is not in the local Hugging Face cache ({hub_cache_dir()}); {fix}")
    missing = _without_weights(snapshot) if weights else None
    if missing:
        raise ModelNotCachedError(f"model {model!r} is in the local Hugging Face cache ({snapshot}) without the "
                                  f"weights of {missing}; {fix}")


def _without_weights(snapshot: Path) -> str | None:
    """The first component model_index.json lists whose weights are not in the snapshot."""
    try:
        index = json.loads((snapshot / "model_index.json").read_text())
    except (OSError, ValueError):
        return None   # unreadable: the family check and the loader say so
    for name, entry in index.items() if isinstance(index, dict) else ():
        if name.startswith("_") or name in NOT_LOADED or not isinstance(entry, list) or None in entry:
            continue
        folder = snapshot / name
        if not folder.is_dir():
            return name
        if (folder / "config.json").is_file() and not any(
                f.name.endswith(WEIGHT_SUFFIXES) and f.exists() for f in folder.iterdir()):
            return name
    return None


def check_model(model: str) -> None:
    """ModelLoadError (one line) when a local model directory is missing or not a pipeline; hub ids pass
    (check_hub_model looks them up in the cache)."""
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
