"""Every command that reads a campaign checks it against its journal first: a damaged copy of a real finished
campaign is one `error:` line naming the damaged file, exit 2, before a model loads or Ray starts.

The campaign is real: UCE on the toy world, steps 1 (star) and 2 (square) committed with their deltas, step 3
(round) skipped, status finished (tests/fixtures/recorded_toy/ keeps no deltas, so it is built here, once per
module, as tests/jobs/test_export.py builds its own). Each test copies it into tmp_path and damages the copy.
A `torch` that refuses to import is put first on PYTHONPATH where a test must prove no model was loaded.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml

from erasecore.codec import to_json
from erasecore.contracts import StepRequest
from erasecore.models import toy_pipeline_dir
from orchestrator.manifest import Manifest
from tests.e2e.cli_runner import assert_one_line_error, erase
from tests.fixtures.guarded_campaign import committed_toy_campaign

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not (toy_pipeline_dir() / "model_index.json").is_file(),
                                 reason="toy world weights not built (python -m jobs.toyworld.build)")]

FIRST = "steps/1-star/attempt-1/delta.safetensors"
SECOND = "steps/2-square/attempt-1/delta.safetensors"
REQUEST = "steps/2-square/attempt-1/request.json"


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished toy campaign with two committed UCE deltas (about 15 s on 2 cores: one pipeline load), and the
    request step 2's worker ran, as jobs/step.py writes it beside the attempt."""
    root = committed_toy_campaign(tmp_path_factory.mktemp("finished") / "toy")
    manifest = Manifest.open(root)
    first, _ = manifest.committed_deltas()
    request = StepRequest(campaign=manifest.campaign, step=2, attempt=1, concept="square", method="uce",
                          hparams={"erase_scale": 1.0}, model="toyworld", parents=(first,),
                          out_dir=str(manifest.attempt_path(2, "square", 1)))
    (root / REQUEST).write_text(to_json(request))
    return root


@pytest.fixture
def copy(finished, tmp_path) -> Path:
    """The finished campaign copied into this test's directory (its request names the copy's deltas)."""
    root = tmp_path / "toy"
    shutil.copytree(finished, root)
    request = root / REQUEST
    request.write_text(request.read_text().replace(str(finished), str(root)))
    return root


@pytest.fixture
def no_torch(tmp_path, monkeypatch) -> None:
    """A `torch` that fails to import, first on the path of every `erase` this test runs: a command that loads
    a model (or imports torch at all) ends in an ImportError traceback instead of its one error line."""
    fake = tmp_path / "no-torch" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("no torch here: the command tried to load a model")\n')
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def truncate_at_a_line(path: Path) -> None:
    """Keep the first half of the lines: still valid YAML, so only the check against the journal sees it."""
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: len(lines) // 2]))


# damage -> (what it does to the copy, words the one error line must hold, with {root} filled in)
DAMAGES = {
    "changed-first-delta": (lambda root: flip_a_byte(root / FIRST), [FIRST, "sha256 differs"]),
    "deleted-delta": (lambda root: (root / SECOND).unlink(), [SECOND, "is missing"]),
    "truncated-delta": (lambda root: (root / SECOND).write_bytes((root / SECOND).read_bytes()[:1000]),
                        [SECOND, "is truncated"]),
    "truncated-spec": (lambda root: truncate_at_a_line(root / "spec.yaml"), ["{root}/spec.yaml", "is truncated"]),
    "no-steps-directory": (lambda root: shutil.rmtree(root / "steps"), ["{root}/steps is missing"]),
}
COMMANDS = {
    "export": ("export", "{root}", "--format", "diffusers"),
    "report": ("report", "{root}"),
    "status": ("status", "{root}"),
    "watch": ("watch", "{root}", "--interval", "0.2"),
    "resume": ("resume", "{root}", "--num-cpus", "1"),
}


def fill(items, root: Path) -> list[str]:
    return [item.format(root=root) for item in items]


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_campaign_is_one_error_line_naming_the_file(copy, damage, command, no_torch):
    damage_it, words = DAMAGES[damage]
    damage_it(copy)
    journal = (copy / "manifest.json").read_bytes()
    result = erase(*fill(COMMANDS[command], copy), timeout=180)
    assert_one_line_error(result, *fill(words, copy))
    assert result.stdout == ""                                   # no table, no progress, no library output
    assert (copy / "manifest.json").read_bytes() == journal      # nothing written to the journal
    assert not (copy / "exports").exists() and not (copy / "report.html").exists()


def test_export_of_a_changed_delta_stops_before_the_pipeline_loads(copy, no_torch):
    """The issue's case: it used to load the pipeline (9 lines of library output) before its error line."""
    flip_a_byte(copy / FIRST)
    started = time.monotonic()
    result = erase("export", str(copy), "--format", "diffusers", "--out", str(copy.parent / "merged"), timeout=120)
    seconds = time.monotonic() - started
    assert_one_line_error(result, FIRST, "sha256 differs")
    assert result.stdout == "" and not (copy.parent / "merged").exists()
    print(f"refused in {seconds:.1f} s")


@pytest.mark.parametrize("upto, words", [(99, ["2 commits", "--upto 99", "last committed step 2"]),
                                         (3, ["--upto 3", "last committed step 2"]),
                                         (0, ["--upto", ">= 1"])],
                         ids=["99", "past-the-last-commit", "zero"])
def test_export_upto_outside_the_commits(copy, upto, words, no_torch):
    result = erase("export", str(copy), "--format", "diffusers", "--upto", str(upto), timeout=120)
    assert_one_line_error(result, *words)
    assert result.stdout == "" and not (copy / "exports").exists()


@pytest.mark.parametrize("command", ["resume", "run"])
def test_resume_or_run_from_the_campaign_yaml_refuses_a_changed_delta_before_ray(copy, tmp_path, command, no_torch):
    doc = yaml.safe_load((copy / "spec.yaml").read_text())
    campaign = tmp_path / "toy.yaml"
    campaign.write_text(yaml.safe_dump({**doc, "storage_path": str(copy)}))
    flip_a_byte(copy / SECOND)
    result = erase(command, str(campaign), "--num-cpus", "1", timeout=180)
    assert_one_line_error(result, SECOND, "sha256 differs")
    assert result.stdout == ""


def test_a_step_request_whose_parent_changed_is_refused_before_a_model_loads(copy, no_torch):
    flip_a_byte(copy / FIRST)
    result = erase("step", str(copy / REQUEST), timeout=120)
    assert_one_line_error(result, FIRST, "sha256 differs", "parent delta 1", "request.json")
    assert result.stdout == ""


def test_a_truncated_step_request_is_one_line(copy):
    request = copy / REQUEST
    request.write_text(request.read_text()[:150])
    assert_one_line_error(erase("step", str(request), timeout=120), "request.json", "is not a step request")


def test_an_intact_copy_still_reads(copy, no_torch):
    """The check is not always failing: status, report and watch of the intact copy succeed (no torch needed)."""
    status = erase("status", str(copy), timeout=120)
    assert status.returncode == 0 and status.stderr == "", status.stdout + status.stderr
    assert "campaign toy: finished" in status.stdout and "sha256" in status.stdout
    report = erase("report", str(copy), timeout=120)
    assert report.returncode == 0, report.stdout + report.stderr
    assert (copy / "report.html").is_file()
    watch = erase("watch", str(copy), "--interval", "0.2", timeout=120)
    assert watch.returncode == 0, watch.stdout + watch.stderr


def test_an_intact_copy_still_exports(copy):
    result = erase("export", str(copy), "--format", "lora", "--upto", "1", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (copy / "exports" / "toy-step1-lora" / "export.json").is_file()


def test_files_the_commands_read_only_as_advice_do_not_block_them(copy):
    """What is not a commit (a worker's request.json and gate_report.json, progress and placement records,
    live.json) may be damaged without making the campaign unreadable: the journal holds the truth."""
    attempt = copy / "steps/1-star/attempt-1"
    (copy / REQUEST).write_text((copy / REQUEST).read_text()[:100])
    (attempt / "gate_report.json").write_text('{"concept": "st')
    (attempt / "progress.jsonl").write_bytes(b'{"t": 1, "phase": "erase", "sta\x00\xff')
    (attempt / "placement.json").write_text("[1, 2")
    (copy / "live.json").write_text("{")
    for command in ("status", "report"):
        result = erase(command, str(copy), timeout=120)
        assert result.returncode == 0 and result.stderr == "", result.stdout + result.stderr
