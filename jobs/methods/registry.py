"""Run a catalog method on a pipeline: look up its entry, check the family, resolve its hyperparameters."""
from __future__ import annotations

import dataclasses
import importlib

from erasecore import catalog
from erasecore.errors import MethodConfigError, MethodPluginError
from erasecore.families import family_of


def implementation(entry: catalog.MethodEntry):
    """The function `entry.entry` names ("module:function"); MethodPluginError, one line naming the method and
    its worker, when that cannot be imported (a plugin's broken worker module), not a traceback."""
    module, _, function = entry.entry.partition(":")
    try:
        return getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as e:
        raise MethodPluginError(f"method {entry.name!r}: its worker {entry.entry!r} cannot be imported: "
                                f"{type(e).__name__}: {e}") from e


def erase(name: str, pipe, inputs):
    """Run method `name` on `pipe` with inputs.hparams over the catalog defaults.

    A campaign's step arrives settled (orchestrator.campaign.step_request resolved every value; resolving a
    resolved set returns it unchanged): here the family and the values are only checked. Direct callers
    (benches, tests) may pass overrides alone. MethodConfigError when the method cannot apply to the
    pipeline's family or a hyperparameter is unknown or mistyped (preflight refuses both first).
    """
    entry = catalog.get(name)
    family = family_of(type(pipe).__name__)
    reason = entry.not_for.get(family) if family else None
    if reason:
        raise MethodConfigError(f"method {name!r} does not apply to {family} models ({type(pipe).__name__}): {reason}")
    resolved = dataclasses.replace(inputs, hparams=entry.resolve(dict(inputs.hparams)), method=entry)
    return implementation(entry)(pipe, resolved)
