"""orchestrator/integrity.py: a campaign directory checked against its journal, one damage at a time.

Pure and fast: a journal made with the real Manifest, deltas written as small hand-made safetensors files
(no torch), each case damaging one file and expecting one ManifestError line that names it.
"""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest

from erasecore.contracts import DeltaRef
from erasecore.errors import ManifestError
from orchestrator.integrity import verify_campaign, verify_delta
from orchestrator.manifest import Manifest
from orchestrator.spec import load_spec
from tests.unit.test_campaign import ACCEPT, gate_report

CONCEPTS = ("star", "square", "round")


def safetensors_bytes(values: int) -> bytes:
    """A valid safetensors file: one float32 vector of `values` entries."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [values], "data_offsets": [0, 4 * values]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\x01" * (4 * values)


@pytest.fixture
def campaign(tmp_path) -> Path:
    """star and square committed (deltas of 64 and 32 floats), round skipped; the journal says finished."""
    root = tmp_path / "toy"
    m = Manifest.create(root, load_spec(None, ["name=toy", f"concepts=[{','.join(CONCEPTS)}]", f"storage_path={root}"]))
    for step, (concept, values) in enumerate([("star", 64), ("square", 32)], 1):
        m.record_start(step, concept, 1, "uce", {})
        path = m.attempt_path(step, concept, 1) / "delta.safetensors"
        path.parent.mkdir(parents=True)
        path.write_bytes(safetensors_bytes(values))
        m.record_result(step, 1, ACCEPT, gate_report(concept, ACCEPT),
                        DeltaRef(str(path), hashlib.sha256(path.read_bytes()).hexdigest()))
        m.commit(step, 1)
    m.skip(3, "round", "given up")
    m.set_status("finished")
    return root


def delta(root: Path, step: int = 1) -> Path:
    return root / ("steps/1-star/attempt-1" if step == 1 else "steps/2-square/attempt-1") / "delta.safetensors"


def refused(root: Path, *words: str) -> str:
    with pytest.raises(ManifestError) as caught:
        verify_campaign(root)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return message


def test_an_intact_campaign_passes_and_is_returned_open(campaign):
    manifest = verify_campaign(campaign)
    assert [c.step for c in manifest.history.commits] == [1, 2]


def test_a_campaign_without_commits_needs_no_steps_directory(tmp_path):
    root = tmp_path / "new"
    Manifest.create(root, load_spec(None, ["name=new", "concepts=[star]", f"storage_path={root}"]))
    verify_campaign(root)


def test_a_changed_byte_is_a_sha256_mismatch_with_both_hashes(campaign):
    path = delta(campaign)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    refused(campaign, str(path), "sha256 differs", expected[:12], actual[:12], "step 1, star")


def test_nothing_is_cached_between_calls(campaign):
    verify_campaign(campaign)
    path = delta(campaign, 2)
    path.write_bytes(path.read_bytes()[:-4] + b"\x02" * 4)
    refused(campaign, "2-square", "sha256 differs")


def test_a_missing_delta(campaign):
    delta(campaign, 2).unlink()
    refused(campaign, str(delta(campaign, 2)), "is missing", "step 2, square")


def test_a_missing_attempt_directory(campaign):
    for f in delta(campaign).parent.iterdir():
        f.unlink()
    delta(campaign).parent.rmdir()
    refused(campaign, str(delta(campaign).parent), "is missing", "step 1, star")


def test_a_missing_steps_directory(campaign):
    import shutil

    shutil.rmtree(campaign / "steps")
    message = refused(campaign, str(campaign / "steps"), "is missing")
    assert "attempt-1" not in message   # the directory that is gone, not the first file under it


def test_a_truncated_delta_is_named_truncated_before_hashing(campaign):
    path = delta(campaign)
    whole = path.read_bytes()
    path.write_bytes(whole[:-10])
    refused(campaign, str(path), "is truncated", f"{len(whole) - 10} bytes", f"at least {len(whole)}")


def test_an_empty_delta_is_truncated(campaign):
    delta(campaign, 2).write_bytes(b"")
    refused(campaign, str(delta(campaign, 2)), "is truncated: 0 bytes")


def test_a_delta_that_is_not_a_file_is_unreadable(campaign):
    path = delta(campaign)
    path.unlink()
    path.mkdir()
    refused(campaign, str(path), "unreadable")


def test_every_file_is_looked_for_before_any_is_hashed(campaign):
    """Cheapest first: a missing step-2 delta is reported even though step 1's bytes changed too."""
    delta(campaign).write_bytes(safetensors_bytes(64)[:-1] + b"\x09")
    delta(campaign, 2).unlink()
    refused(campaign, "2-square", "is missing")


def test_a_truncated_spec_snapshot(campaign):
    path = campaign / "spec.yaml"
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    refused(campaign, str(path), "is truncated", f"{len(whole) // 2} of {len(whole)} bytes", "jq -j .spec_yaml")


def test_an_edited_spec_snapshot(campaign):
    path = campaign / "spec.yaml"
    path.write_text(path.read_text().replace("name: toy", "name: other"))
    refused(campaign, str(path), "differs from the spec the journal records")


def test_a_missing_spec_snapshot(campaign):
    (campaign / "spec.yaml").unlink()
    refused(campaign, str(campaign / "spec.yaml"), "is missing")


def test_a_truncated_journal(campaign):
    path = campaign / "manifest.json"
    path.write_bytes(path.read_bytes()[:200])
    refused(campaign, str(path), "corrupt manifest")


def test_a_step_requests_parent_is_checked_the_same_way(campaign):
    path = delta(campaign)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    verify_delta(path, sha, "parent delta 1 of request.json")
    with pytest.raises(ManifestError, match="sha256 differs.*parent delta 1 of request.json"):
        verify_delta(path, "0" * 64, "parent delta 1 of request.json")
    with pytest.raises(ManifestError, match="is missing"):
        verify_delta(path.with_name("gone.safetensors"), sha)
