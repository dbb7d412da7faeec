"""Is a campaign directory still what its journal says? Checked by every command that reads one.

    manifest = verify_campaign("runs/toy")   # the opened Manifest, or ManifestError (one line)

The journal (manifest.json) is the truth of a campaign; what it commits is trusted only while the
files on storage_path still match it. `erase resume`, `run` (of an existing journal), `export`, `report`,
`status` and `watch` call verify_campaign before they read a campaign; it checks, cheapest first:

  1. manifest.json exists and parses (Manifest.open);
  2. spec.yaml is the journal's spec snapshot byte for byte (missing, unreadable, truncated or edited
     are refused: the read commands build the spec from it);
  3. every committed attempt's directory and delta exist and are readable files, and a delta is not
     shorter than its own safetensors header says (truncated), for all commits before any hashing;
  4. the sha256 of every committed delta equals the one the journal recorded at its commit.

`erase step REQUEST.json` checks the request's parent deltas the same way (verify_delta).
The first problem found is raised as ManifestError naming the file and what is wrong (missing,
unreadable, truncated, sha256 differs with the first 12 hex digits of the journal's and the file's).
Nothing is cached: step 4 reads every committed delta whole at every call. Deltas are small on the toy
world (hundreds of KB); on real models they are MBs (LoRA) to GBs (dense full fine-tunes), i.e. about
as long as reading them once (~1 s/GB from the page cache), which these commands can afford. Plain
Python only (json, hashlib via orchestrator.manifest, pathlib): no torch, no Ray, nothing of jobs/.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

from erasecore.errors import ManifestError
from orchestrator.manifest import SPEC_SNAPSHOT, CommitRecord, Manifest, sha256_file

SAFETENSORS = ".safetensors"
MAX_HEADER = 100 * 2**20          # a larger header length is not a safetensors header (the format's own cap)
RESTORE_SPEC = "restore it from the journal: jq -j .spec_yaml {manifest} > {path}"
RESTORE_DELTA = "restore it from a backup or a copy of the campaign directory (nothing reads a changed commit)"


def verify_campaign(storage_path: str | Path) -> Manifest:
    """Open the campaign at `storage_path` and check it against its journal (see the module docstring).

    Returns the opened Manifest; raises ManifestError with one line naming the first damaged file."""
    manifest = Manifest.open(storage_path)
    verify_spec_snapshot(manifest)
    commits = sorted(manifest.history.commits, key=lambda c: c.step)
    for commit in commits:                       # every existence and size check before any hashing
        verify_committed_files(manifest.root, commit)
    for commit in commits:
        verify_sha256(manifest.root, commit)
    return manifest


def verify_spec_snapshot(manifest: Manifest) -> None:
    """spec.yaml must hold exactly the spec the journal records (Manifest writes both)."""
    path = manifest.root / SPEC_SNAPSHOT
    expected = manifest.spec_yaml.encode("utf-8")
    restore = RESTORE_SPEC.format(manifest=manifest.path, path=path)
    if not path.is_file():
        state = "is missing" if not path.exists() else "is not a file"
        raise ManifestError(f"{path} {state} (the campaign's spec snapshot); {restore}")
    try:
        actual = path.read_bytes()
    except OSError as e:
        raise ManifestError(f"{path} is unreadable ({e.strerror or type(e).__name__}); {restore}") from None
    if actual == expected:
        return
    if len(actual) < len(expected) and expected.startswith(actual):
        raise ManifestError(f"{path} is truncated: {len(actual)} of {len(expected)} bytes of the spec the journal "
                            f"records; {restore}")
    raise ManifestError(f"{path} differs from the spec the journal records ({len(actual)} bytes, the journal's "
                        f"{len(expected)}: edited or damaged; settings change with overrides, not in this file); "
                        f"{restore}")


def verify_committed_files(root: Path, commit: CommitRecord) -> None:
    """The committed attempt's directory and delta exist, can be opened, and the delta is not truncated."""
    path = root / commit.delta.path
    if not path.parent.is_dir():
        steps = root / "steps"
        missing = steps if not steps.is_dir() else path.parent
        raise ManifestError(f"{missing} is missing: it held the delta of {_what(commit)}; {RESTORE_DELTA}")
    check_delta_file(path, f"the delta of {_what(commit)}")


def verify_sha256(root: Path, commit: CommitRecord) -> None:
    """The delta's bytes are those the journal committed."""
    check_delta_sha256(root / commit.delta.path, commit.delta.sha256, f"the delta of {_what(commit)}")


def verify_delta(path: str | Path, sha256: str, what: str = "a committed delta") -> None:
    """One delta named with its sha256 elsewhere (a step request's parents): present, whole, same bytes."""
    check_delta_file(Path(path), what)
    check_delta_sha256(Path(path), sha256, what)


def check_delta_file(path: Path, what: str) -> None:
    """`path` exists, is a readable file, and is not shorter than its safetensors header says."""
    if not path.exists():
        raise ManifestError(f"{path} is missing ({what}); {RESTORE_DELTA}")
    if not path.is_file():
        raise ManifestError(f"{path} is unreadable: not a file ({what}); {RESTORE_DELTA}")
    try:
        with open(path, "rb") as f:
            size = path.stat().st_size
            expected = _safetensors_size(f) if path.suffix == SAFETENSORS else None
    except OSError as e:
        raise ManifestError(f"{path} is unreadable ({e.strerror or type(e).__name__}; {what}); {RESTORE_DELTA}") \
            from None
    if size == 0 or (expected is not None and size < expected):
        of = f", its header says at least {expected}" if expected else ""
        raise ManifestError(f"{path} is truncated: {size} bytes{of} ({what}); {RESTORE_DELTA}")


def check_delta_sha256(path: Path, sha256: str, what: str) -> None:
    """The sha256 of `path`'s bytes is `sha256` (reads the whole file)."""
    try:
        actual = sha256_file(path)
    except OSError as e:
        raise ManifestError(f"{path} is unreadable ({e.strerror or type(e).__name__}; {what}); {RESTORE_DELTA}") \
            from None
    if actual != sha256:
        raise ManifestError(f"{path} sha256 differs: expected {sha256[:12]} (recorded at its commit), file has "
                            f"{actual[:12]} ({what}: changed after its commit); {RESTORE_DELTA}")


def _what(commit: CommitRecord) -> str:
    return f"committed step {commit.step}, {commit.concept}"


def _safetensors_size(f) -> int | None:
    """The length a safetensors file must have by its own header (8-byte length, JSON, data); None when
    the header cannot be read as one (the sha256 check then tells the file apart)."""
    head = f.read(8)
    if len(head) < 8:
        return None                    # 1-7 bytes: the sha256 check refuses it
    (n,) = struct.unpack("<Q", head)
    if n > MAX_HEADER:
        return None
    raw = f.read(n)
    if len(raw) < n:
        return 8 + n                   # cut inside the header
    try:
        header = json.loads(raw)
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None
    return 8 + n + max(ends, default=0)
