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
    """Run method `name` on `pipe`; MethodConfigError when it cannot apply to the pipeline's family."""
    from jobs.families import family_of, why_not
    from jobs.methods.interface import MethodConfigError

    family = family_of(type(pipe).__name__)
    reason = why_not(name, family) if family else None
    if reason:   # config time refuses this first (orchestrator.spec); this guards direct callers
        raise MethodConfigError(f"method {name!r} does not apply to {family} models ({type(pipe).__name__}): {reason}")
    module = get(name)
    return module.erase_variant(name, pipe, inputs) if hasattr(module, "erase_variant") else module.erase(pipe, inputs)
