"""A judge's weights and tokenizer from a hub id (offline when HF_HUB_OFFLINE) or a local directory."""
from __future__ import annotations

import os

from transformers import AutoTokenizer

from erasecore.errors import ModelLoadError
from erasecore.models import looks_local


def load_checkpoint(model_class, ref: str, device: str, what: str):
    """(model in eval mode on `device`, tokenizer); any failure is one ModelLoadError line naming `what`."""
    local = looks_local(ref) or bool(os.environ.get("HF_HUB_OFFLINE"))
    try:
        model = model_class.from_pretrained(ref, local_files_only=local).to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(ref, local_files_only=local)
    except Exception as e:   # transformers raises many types; the user needs one line
        raise ModelLoadError(f"cannot load {what} {ref!r}: {type(e).__name__}: {str(e).splitlines()[0]}") from e
    return model, tokenizer
