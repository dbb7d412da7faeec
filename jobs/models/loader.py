"""One loader for every model reference: the embedded toy world, a local diffusers directory, or a hub id."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from diffusers import DiffusionPipeline

from jobs.models.precision import frozen_dtype, hold_frozen_in
from erasecore.errors import ModelLoadError
from erasecore.models import TOY, looks_local, resolve


def _absent_components(index: Path) -> dict:
    """Components a local pipeline was saved without, passed as None so diffusers does not ask for them.

    A safety checker is never loaded; an SD3 saved without T5 lists text_encoder_3/tokenizer_3 as
    [null, null], which from_pretrained refuses unless they are given explicitly.
    """
    if not index.is_file():
        return {}
    try:
        entries = json.loads(index.read_text())
    except (OSError, ValueError):
        return {}   # from_pretrained reports the unreadable file
    absent = {k: None for k, v in entries.items() if not k.startswith("_") and v in ([None, None], None)}
    if "safety_checker" in entries:
        absent.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return absent


def load_pipeline(model: str = TOY, device: str = "cpu", dtype=None, frozen_precision: str = "fp32"):
    """Load a text-to-image diffusers pipeline; raise ModelLoadError with one clear line.

    frozen_precision holds the text encoders and VAE in bf16/fp16 (jobs/models/precision.py).
    """
    ref = resolve(model)
    local = Path(ref)
    if local.exists() and not (local / "model_index.json").is_file():
        raise ModelLoadError(f"{ref} is not a diffusers pipeline directory (no model_index.json)")
    is_local = looks_local(ref)
    if is_local and not local.exists():
        raise ModelLoadError(f"model {model!r}: no such directory {ref}")
    kwargs = {"dtype": dtype or torch.float32, **_absent_components(local / "model_index.json")}
    if not is_local:   # the hub client's retry warnings stay off the driver's terminal: the error below is one line
        logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    try:
        pipe = DiffusionPipeline.from_pretrained(ref, local_files_only=is_local or bool(os.environ.get("HF_HUB_OFFLINE")),
                                                 **kwargs)
    except Exception as e:  # diffusers raises many types; the user needs one line
        raise ModelLoadError(f"cannot load model {model!r} from {ref}: {type(e).__name__}: {str(e).splitlines()[0]}") from e
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    hold_frozen_in(pipe, frozen_dtype(frozen_precision, device))
    return pipe


def quiet_loading() -> None:
    """diffusers' and transformers' loading progress bars and advice off: a command whose stderr is its one
    error line (erase judge-check) loads a pipeline without them."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.disable_progress_bar()
        library.set_verbosity_error()
