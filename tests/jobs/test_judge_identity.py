"""The pieces of a judge's identity (jobs/validation/judges/identity.py): a file's sha256 (again after the file
changes), the weight files a transformers checkpoint loads, from a directory or the local Hugging Face cache."""
from __future__ import annotations

import os
from hashlib import sha256
from importlib.metadata import version

from jobs.validation.judges.identity import checkpoint_weights, identity_of, sha256_file, versions, weight_hashes


def test_a_files_hash_follows_its_bytes(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"first")
    assert sha256_file(path) == sha256(b"first").hexdigest()
    path.write_bytes(b"second, longer")
    os.utime(path, ns=(1, 1))   # even with an old mtime: the size changed
    assert sha256_file(path) == sha256(b"second, longer").hexdigest()


def test_a_checkpoints_safetensors_are_what_it_loads_else_its_pickles(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    assert checkpoint_weights(str(tmp_path)) == (tmp_path, [tmp_path / "pytorch_model.bin"])
    (tmp_path / "model.safetensors").write_bytes(b"tensors")
    root, files = checkpoint_weights(str(tmp_path))
    assert weight_hashes(root, files) == {"model.safetensors": sha256(b"tensors").hexdigest()}


def test_a_hub_ids_weights_are_read_from_its_snapshot_in_the_local_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert checkpoint_weights("someone/clip-nowhere")[1] == []   # not cached: no weights named, no error
    repo = tmp_path / "hub" / "models--someone--clip"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    (snapshot / "config.json").write_text("{}")
    (snapshot / "model.safetensors").write_bytes(b"clip")
    root, files = checkpoint_weights("someone/clip")
    assert root == snapshot and weight_hashes(root, files) == {"model.safetensors": sha256(b"clip").hexdigest()}


def test_versions_and_a_judge_without_an_identity():
    assert versions("nudenet", "no-such-distribution") == {"nudenet": version("nudenet"),
                                                           "no-such-distribution": "absent"}

    class Plugin:
        name = "florence"

    assert identity_of(Plugin()).name == "florence" and "no identity" in identity_of(Plugin()).rule
