"""Model deltas, the unit of model change: compute, save, verify, load, apply, stack, merge.

Model k = base + delta 1 + ... + delta k. A delta file is safetensors, one of two kinds:

- "dense": additive differences of the touched parameters only, keyed "<component>.<parameter>",
  e.g. "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight".
- "lora": per target Linear module, "<component>.<module>.lora_A.weight" (rank x in) and
  "<component>.<module>.lora_B.weight" (out x rank); every module has the file's rank, and the
  change to "<component>.<module>.weight" is alpha / rank * B @ A.

The header's metadata holds DeltaMeta as strings (config as sorted JSON). Files are written by
this module, byte for byte deterministic, and read only after checking the header by hand:
nothing here ever unpickles.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from erasecore.atomic import atomic_write, fsync_dir
from erasecore.contracts import DeltaRef
from erasecore.errors import CampaignError

FORMAT_VERSION = 1
KINDS = ("dense", "lora")
SUFFIX = ".safetensors"
COMPONENTS = ("unet", "text_encoder")
LORA_A, LORA_B = ".lora_A.weight", ".lora_B.weight"

_MAX_HEADER = 100 * 2**20
_ALIGN = 8
_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
           torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
           torch.uint8: "U8", torch.bool: "BOOL"}
_DTYPE_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
               "BOOL": 1}


class DeltaError(CampaignError, ValueError):
    """A delta that cannot be trusted or applied; the message is one line naming the file or key."""


@dataclass(frozen=True)
class DeltaMeta:
    """What a delta is and where it came from; stored in the safetensors header.

    `config` must be JSON-serialisable; it comes back through JSON (tuples become lists).
    `parent_sha256` is the sha256 of the delta this one was computed on top of ("" for the first).
    """

    kind: str                      # "dense" | "lora"
    method: str
    concept: str
    config: dict[str, Any] = field(default_factory=dict)
    parent_sha256: str = ""
    rank: int = 0                  # lora only
    alpha: float = 0.0             # lora only: change = alpha / rank * B @ A
    format_version: int = FORMAT_VERSION

    @property
    def scale(self) -> float:
        """The LoRA multiplier alpha / rank (1.0 for dense)."""
        return self.alpha / self.rank if self.kind == "lora" else 1.0

    def to_header(self) -> dict[str, str]:
        try:
            config = json.dumps(self.config, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError) as e:
            raise DeltaError(f"delta config of {self.method}/{self.concept} is not plain JSON: {e}") from None
        return {"format": "pt", "delta_format": str(self.format_version), "kind": self.kind,
                "method": self.method, "concept": self.concept, "config": config,
                "parent_sha256": self.parent_sha256, "rank": str(self.rank), "alpha": repr(float(self.alpha))}

    @classmethod
    def from_header(cls, header: Mapping[str, str]) -> "DeltaMeta":
        """Inverse of to_header; raises KeyError/ValueError on missing or malformed fields."""
        return cls(kind=header["kind"], method=header["method"], concept=header["concept"],
                   config=json.loads(header["config"]), parent_sha256=header.get("parent_sha256", ""),
                   rank=int(header.get("rank", "0")), alpha=float(header.get("alpha", "0.0")),
                   format_version=int(header["delta_format"]))


# ---------------------------------------------------------------- computing a delta

def _components(pipe, components: Iterable[str]):
    for comp in components:
        module = getattr(pipe, comp, None)
        if isinstance(module, torch.nn.Module):
            yield comp, module


def snapshot(pipe, names: Iterable[str] | None = None,
             components: Sequence[str] = COMPONENTS) -> dict[str, torch.Tensor]:
    """Clone parameters before erasing, keyed "<component>.<name>".

    `names` are full keys (any component, e.g. "transformer.…"); None takes every parameter
    with requires_grad in `components`, so freeze what the method will not train first.
    Clones stay on the parameter's device and dtype.
    """
    wanted = None if names is None else set(names)
    if wanted is not None:
        components = sorted({k.partition(".")[0] for k in wanted})
    out = {}
    for comp, module in _components(pipe, components):
        for name, p in module.named_parameters():
            key = f"{comp}.{name}"
            if (key in wanted) if wanted is not None else p.requires_grad:
                out[key] = p.detach().clone()
    if wanted is not None and (missing := wanted - out.keys()):
        raise DeltaError(f"snapshot: the pipeline has no parameter {sorted(missing)[0]!r}")
    return out


def dense_delta(base_state: Mapping[str, torch.Tensor], pipe, components: Sequence[str] | None = None,
                atol: float = 0.0) -> dict[str, torch.Tensor]:
    """Float32 CPU differences (now - snapshot) of the snapshotted parameters that moved by more than atol.

    `components` defaults to those named in base_state's keys.
    """
    if components is None:
        components = sorted({k.partition(".")[0] for k in base_state})
    out = {}
    for comp, module in _components(pipe, components):
        for name, p in module.named_parameters():
            key = f"{comp}.{name}"
            if key not in base_state:
                continue
            diff = p.detach().float() - base_state[key].to(p.device).float()
            if diff.numel() and diff.abs().max().item() > atol:
                out[key] = diff.cpu()
    return out


def dense_change(tensors: Mapping[str, torch.Tensor], meta: DeltaMeta) -> dict[str, torch.Tensor]:
    """The dense change a delta makes, keyed by parameter: dense as is, lora as alpha/r * B @ A (float32)."""
    if meta.kind == "dense":
        return {k: v.float() for k, v in tensors.items()}
    out = {}
    for key in sorted(tensors):
        if key.endswith(LORA_A):
            module = key[: -len(LORA_A)]
            a, b = tensors[key].float(), tensors[module + LORA_B].float()
            out[module + ".weight"] = meta.scale * (b @ a)
    return out


# ---------------------------------------------------------------- the file format

def write_safetensors(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str], path: str | Path) -> str:
    """Write a safetensors file atomically (temp file, fsync, rename); return its sha256.

    Our own writer because safetensors' Rust writer orders `__metadata__` by a random hash
    seed, so the same content would get a different hash in every process.
    """
    path = Path(path)
    header: dict[str, Any] = {"__metadata__": dict(sorted(metadata.items()))} if metadata else {}
    for name, t in tensors.items():
        if t.dtype not in _DTYPES:
            raise DeltaError(f"cannot write {name!r}: unsupported dtype {t.dtype}")
    blobs, offset = [], 0
    # Wider dtypes first, then by name: every tensor's data stays aligned to its element size.
    for name in sorted(tensors, key=lambda k: (-tensors[k].element_size(), k)):
        t = tensors[name].detach().to("cpu").contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % _ALIGN)  # the format allows space padding; keeps data aligned
    payload = [struct.pack("<Q", len(text)), text, *blobs]
    try:
        return atomic_write(path, payload)   # a partial file never stays, and never under the final name
    except OSError as e:
        raise DeltaError(_write_error(path, e)) from e


def _write_error(path: Path, e: OSError) -> str:
    """One line naming the file and why it could not be written (a full disk says so)."""
    why = e.strerror or str(e) or type(e).__name__
    if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        why += " (the disk is full or a file size limit was reached; nothing was written under this name)"
    return f"cannot write {path}: {why}"


def _check_header(path: Path, what: str) -> dict[str, str]:
    """Validate a safetensors header by hand against the file size; return its metadata.

    Catches truncation, garbage and non-safetensors files before any parser sees them.
    """
    def corrupt(why: str) -> DeltaError:
        return DeltaError(f"{what} is corrupt: {why}")

    size = path.stat().st_size
    with open(path, "rb") as f:
        first = f.read(8)
        if len(first) < 8:
            raise corrupt(f"{size} bytes, shorter than a safetensors header")
        (n,) = struct.unpack("<Q", first)
        if n > min(_MAX_HEADER, size - 8):
            raise corrupt(f"header length {n} does not fit in a {size}-byte file (truncated or not safetensors)")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise corrupt(f"header is not JSON ({type(e).__name__})") from None
    if not isinstance(header, dict):
        raise corrupt("header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise corrupt("__metadata__ is not a map of strings")
    body, spans = size - 8 - n, []
    for name, e in header.items():
        try:
            itemsize = _DTYPE_SIZE[e["dtype"]]
            begin, end = (int(x) for x in e["data_offsets"])
            numel = 1
            for d in e["shape"]:
                numel *= int(d)
        except (KeyError, TypeError, ValueError):
            raise corrupt(f"bad header entry for tensor {name!r}") from None
        if not 0 <= begin <= end <= body or end - begin != numel * itemsize:
            raise corrupt(f"tensor {name!r} spans bytes {begin}..{end} of a {body}-byte body (truncated?)")
        spans.append((begin, end))
    spans.sort()
    ends = [0] + [end for _, end in spans]
    if [begin for begin, _ in spans] != ends[:-1] or ends[-1] != body:
        raise corrupt(f"tensor data does not exactly cover the {body}-byte body (truncated or padded)")
    return meta


def read_safetensors(path: str | Path, expected_sha256: str | None = None,
                     what: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str], str]:
    """(tensors, metadata, sha256) of a verified safetensors file; DeltaError otherwise. Never unpickles."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    what = what or f"file {path}"
    if path.suffix != SUFFIX:
        raise DeltaError(f"{what} is not a safetensors file (extension {path.suffix or 'none'!r}); "
                         "refusing to load it (pickled weights can run code)")
    try:
        sha = content_sha256(path)
        if expected_sha256 is not None and sha != expected_sha256:
            raise DeltaError(f"{what} has sha256 {sha[:12]}..., expected {expected_sha256[:12]}... "
                             "(changed or corrupted since it was recorded)")
        meta = _check_header(path, what)
        tensors = load_file(path)
    except DeltaError:
        raise
    except OSError as e:
        raise DeltaError(f"{what} cannot be read: {e.strerror or e}") from None
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise DeltaError(f"{what} is corrupt: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return tensors, meta, sha


# ---------------------------------------------------------------- save / load

def _check_delta(tensors: Mapping[str, torch.Tensor], meta: DeltaMeta, what: str) -> None:
    """Raise DeltaError unless tensors and meta form a valid delta of meta.kind."""
    if meta.kind not in KINDS:
        raise DeltaError(f"{what}: unknown delta kind {meta.kind!r} (expected one of {', '.join(KINDS)})")
    if meta.format_version > FORMAT_VERSION:
        raise DeltaError(f"{what}: delta format {meta.format_version} is newer than this code's {FORMAT_VERSION}")
    if not tensors:
        raise DeltaError(f"{what}: a delta holds at least one tensor")
    for key in tensors:
        if "." not in key:
            raise DeltaError(f"{what}: key {key!r} is not '<component>.<parameter>'")
    if meta.kind == "dense":
        return
    if meta.rank <= 0 or meta.alpha == 0:
        raise DeltaError(f"{what}: a lora delta needs rank > 0 and alpha != 0 (got {meta.rank}, {meta.alpha})")
    for key in tensors:
        if not key.endswith((LORA_A, LORA_B)):
            raise DeltaError(f"{what}: lora key {key!r} ends in neither {LORA_A} nor {LORA_B}")
        module = key[: -len(LORA_A)]  # LORA_A and LORA_B have the same length
        a, b = tensors.get(module + LORA_A), tensors.get(module + LORA_B)
        if a is None or b is None:
            raise DeltaError(f"{what}: lora module {module!r} lacks its {'lora_A' if a is None else 'lora_B'} factor")
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != meta.rank or b.shape[1] != meta.rank:
            raise DeltaError(f"{what}: lora factors of {module!r} have shapes {tuple(a.shape)} and {tuple(b.shape)}, "
                             f"not (rank={meta.rank}, in) and (out, rank)")


def save_delta(tensors: Mapping[str, torch.Tensor], meta: DeltaMeta, path: str | Path) -> DeltaRef:
    """Write a delta atomically; the same content always gives the same bytes and sha256."""
    _check_delta(tensors, meta, f"delta {path}")
    if Path(path).suffix != SUFFIX:
        raise DeltaError(f"delta {path}: the file name must end in {SUFFIX}")
    sha = write_safetensors(tensors, meta.to_header(), path)
    return DeltaRef(path=str(path), sha256=sha)


def load_delta(path: str | Path, expected_sha256: str | None = None) -> tuple[dict[str, torch.Tensor], DeltaMeta]:
    """Read and verify a delta (extension, header, size, sha256, kind); DeltaError with one line otherwise."""
    what = f"delta {path}"
    tensors, header, _ = read_safetensors(path, expected_sha256, what)
    try:
        meta = DeltaMeta.from_header(header)
    except (KeyError, ValueError) as e:
        raise DeltaError(f"{what} is not a delta file: metadata field {e} missing or malformed") from None
    _check_delta(tensors, meta, what)
    return tensors, meta


def content_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (what DeltaRef.sha256 records)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- applying

def _aliases(name: str) -> list[str]:
    """Names one parameter may have across library versions and wrappers."""
    out = [name]
    # transformers 5 dropped CLIPTextModel's "text_model." level; accept deltas from either side.
    out.append(name.removeprefix("text_model.") if name.startswith("text_model.") else "text_model." + name)
    # A module wrapped by a peft adapter keeps its own weight under base_layer.
    head, _, leaf = name.rpartition(".")
    out.append(f"{head}.base_layer.{leaf}")
    return out


def _parameter(pipe, key: str) -> torch.nn.Parameter:
    comp, _, name = key.partition(".")
    module = getattr(pipe, comp, None)
    if not isinstance(module, torch.nn.Module):
        raise DeltaError(f"delta key {key!r}: the pipeline has no component {comp!r}")
    params = dict(module.named_parameters())
    for candidate in _aliases(name):
        if candidate in params:
            return params[candidate]
    raise DeltaError(f"delta key {key!r} does not exist in the pipeline ({comp} has no parameter {name!r})")


@torch.no_grad()
def apply_delta(pipe, tensors: Mapping[str, torch.Tensor], meta: DeltaMeta, scale: float = 1.0) -> None:
    """Add scale * change to the pipeline's parameters in place (dense or lora).

    Every key and shape is checked before any parameter moves, so a bad delta leaves the
    pipeline untouched. The change is computed in float32 and cast to the parameter's dtype.
    """
    _check_delta(tensors, meta, f"delta ({meta.method}/{meta.concept})")
    changes = dense_change(tensors, meta)
    targets = {}
    for key, change in changes.items():
        p = _parameter(pipe, key)
        if p.shape != change.shape:
            raise DeltaError(f"delta key {key!r} has shape {tuple(change.shape)}, the pipeline's is {tuple(p.shape)}")
        targets[key] = p
    for key, p in targets.items():
        p.add_((scale * changes[key]).to(device=p.device, dtype=p.dtype))


def remove_delta(pipe, tensors: Mapping[str, torch.Tensor], meta: DeltaMeta) -> None:
    """Undo apply_delta (exact up to float rounding)."""
    apply_delta(pipe, tensors, meta, scale=-1.0)


def stack(pipe, refs: Sequence[DeltaRef]) -> list[DeltaMeta]:
    """Load each delta (verifying its sha256) and apply them in order; return their metadata.

    One delta in memory at a time. If any fails, those already applied are removed again,
    so the pipeline is left as it was (up to float rounding) and the DeltaError propagates.
    """
    applied: list[tuple[dict[str, torch.Tensor], DeltaMeta]] = []
    try:
        for ref in refs:
            tensors, meta = load_delta(ref.path, ref.sha256)
            apply_delta(pipe, tensors, meta)
            applied.append((tensors, meta))
    except BaseException:
        for tensors, meta in reversed(applied):
            remove_delta(pipe, tensors, meta)
        raise
    return [meta for _, meta in applied]


def merge_to_checkpoint(pipe, refs: Sequence[DeltaRef], out_dir: str | Path) -> Path:
    """Apply refs to pipe (in place: it stays merged) and save a full diffusers pipeline to out_dir.

    Written beside out_dir and renamed into place, so out_dir is either absent or complete;
    refuses an out_dir that already exists. Weights are safetensors in the pipeline's dtype.
    """
    out = Path(out_dir)
    if out.exists():
        raise DeltaError(f"merge: {out} already exists; choose a new directory")
    stack(pipe, refs)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private
        pipe.save_pretrained(tmp, safe_serialization=True)
        os.replace(tmp, out)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(out.parent)
    return out
