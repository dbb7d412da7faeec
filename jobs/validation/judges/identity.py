"""A judge's identity (erasecore.contracts.JudgeIdentity): the sha256 of the weight files it loaded and the
versions of the libraries it ran with, so a gate's numbers name the exact instrument that measured them.

Every gate of a campaign builds its judge again; a file is hashed once per process and (path, size, mtime),
so a 1.7 GB CLIP costs its read once, not once per gate.
"""
from __future__ import annotations

import functools
import hashlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from erasecore.contracts import JudgeIdentity
from erasecore.models import hub_cache_dir, looks_local

# transformers loads a checkpoint's safetensors when it has them, else its PyTorch pickles.
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def sha256_file(path: Path) -> str:
    """The sha256 of the file's bytes (cached while the file keeps its size and mtime)."""
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weight_hashes(root: Path, files: list[Path]) -> dict[str, str]:
    """file (relative to root) -> sha256, for each of `files`."""
    return {str(Path(f).relative_to(root)): sha256_file(f) for f in sorted(files)}


def versions(*distributions: str) -> dict[str, str]:
    """distribution -> installed version ("absent" for one that is not installed)."""
    out = {}
    for name in distributions:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def checkpoint_dir(ref: str) -> Path | None:
    """The directory a transformers checkpoint was loaded from: `ref` itself, or its snapshot in the local
    Hugging Face cache (where from_pretrained put it); None when the cache has no config.json for it."""
    if looks_local(ref):
        return Path(ref)
    from huggingface_hub import try_to_load_from_cache

    # A local lookup only, in the cache the model checks read (erasecore/models.py): naming a judge never fails a gate.
    config = try_to_load_from_cache(ref, "config.json", cache_dir=str(hub_cache_dir()))
    return Path(config).parent if isinstance(config, str) else None


def checkpoint_weights(ref: str) -> tuple[Path, list[Path]]:
    """(directory, the weight files transformers loads from it): its safetensors if any, else its .bin files."""
    root = checkpoint_dir(ref)
    if root is None:
        return Path(ref), []
    for suffix in WEIGHT_SUFFIXES:
        files = sorted(p for p in root.rglob(f"*{suffix}") if p.is_file())
        if files:
            return root, files
    return root, []


def identity_of(judge) -> JudgeIdentity:
    """The judge's own identity(); a plugin judge without one is named, and says it reports nothing more."""
    if hasattr(judge, "identity"):
        return judge.identity()
    return JudgeIdentity(name=getattr(judge, "name", type(judge).__name__),
                         rule="this judge reports no identity (no identity() method)")
