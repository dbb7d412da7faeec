"""Method name -> implementation module (imported on first use, so configs load without torch)."""
from __future__ import annotations

import importlib

from jobs.methods import METHOD_NAMES

_MODULES = {"uce": "uce", "esd-x": "esd", "esd-u": "esd", "fmn": "fmn", "ca": "ablation", "lora": "lora_reverse"}


def get(name: str):
    """The module implementing `name`: it has DEFAULTS and erase(pipe, inputs)."""
    if name not in METHOD_NAMES:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(METHOD_NAMES)}")
    return importlib.import_module(f"jobs.methods.{_MODULES[name]}")


def erase(name: str, pipe, inputs):
    module = get(name)
    return module.erase_variant(name, pipe, inputs) if hasattr(module, "erase_variant") else module.erase(pipe, inputs)
