"""Errors a user can cause. The CLI catches CampaignError once and prints `error: <message>`.

Every message is one line: no traceback, no multi-line omegaconf dump, and it names the
thing to fix (the key, the file, the concept). Raising one never touches committed state.
Both sides raise them: the orchestrator at config time, the workers when a step meets bad input.
"""
from __future__ import annotations


class CampaignError(Exception):
    """Base of every user-facing error; str() is a single line."""

    def __init__(self, message: str):
        super().__init__(_one_line(message))


class ConfigError(CampaignError):
    """The campaign spec (YAML file or CLI overrides) is missing, malformed or invalid."""


class UnknownConceptError(ConfigError, ValueError):
    """A concept or word the chosen model's concept world does not know."""


class MethodConfigError(ConfigError, ValueError):
    """An unknown or mistyped hyperparameter, or a method that cannot apply to this model family."""


class MethodPluginError(MethodConfigError):
    """A method plugin (entry point of group concept_erase.methods) that cannot be loaded or used; names its
    distribution and entry point."""


class ModelLoadError(CampaignError, RuntimeError):
    """A model reference that cannot be loaded (missing, unreadable, not a diffusers pipeline)."""


class ModelNotCachedError(ModelLoadError):
    """A hub id the campaign reads from the local Hugging Face cache (model_source: local) is not there."""


class ManifestError(CampaignError):
    """The campaign journal on storage_path is missing, corrupt, or disagrees with the spec."""


class SpecMismatchError(ManifestError):
    """An existing campaign was started from a different spec (hash differs)."""


class CommitError(ManifestError):
    """A commit was refused: already committed, not accepted by the gate, or bad delta hash."""


class JudgeCheckError(CampaignError):
    """The campaign's judge cannot measure a concept on the base model's own images (erasecore/judge_check.py)."""


class ClusterError(CampaignError):
    """The Ray cluster cannot run the campaign: unreachable, token refused, or no node can hold a step."""


def _one_line(message: str) -> str:
    # omegaconf and yaml put context on extra lines; the CLI prints exactly one.
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())
