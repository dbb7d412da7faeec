"""`erase guard` as a user runs it: its --help, its one-line errors, and a run on a committed toy campaign."""
from __future__ import annotations

import json

import pytest

from erasecore.audit_log import read_records
from erasecore.models import toy_pipeline_dir
from tests.e2e.cli_runner import REPO, assert_one_line_error, erase

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not (toy_pipeline_dir() / "model_index.json").is_file(),
                                 reason="toy world weights not built (python -m jobs.toyworld.build)")]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from tests.fixtures.guarded_campaign import committed_toy_campaign

    return committed_toy_campaign(tmp_path_factory.mktemp("guard-cli") / "toy")


def test_help_documents_the_command_its_options_and_the_log():
    result = erase("guard", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for words in ("PROMPTS_FILE", "--policy {touched,all}", "--on-detect {block,flag}", "--negative", "--log",
                  "--adapters", "--prepare-only", "pre-filter", "controller", "audit", "never rewritten",
                  "prompt_sha256", "adapters_active", "judge_scores",
                  "allowed | blocked_prompt | blocked_image | flagged", "exit status"):
        assert words in text, words
    assert "guard" in erase("--help").stdout


def test_bad_input_is_one_error_line(run, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red star\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n\n")
    assert_one_line_error(erase("guard", str(tmp_path / "nowhere"), str(prompts)), "no campaign directory", "nowhere")
    assert_one_line_error(erase("guard", str(run), str(empty)), "no prompts", "empty.txt")
    assert_one_line_error(erase("guard", str(run), str(tmp_path / "missing.txt")), "no prompt file", "missing.txt")
    assert_one_line_error(erase("guard", str(run)), "PROMPTS_FILE", "--prepare-only")
    assert_one_line_error(erase("guard", str(run), str(prompts), "--adapters", str(tmp_path)), "--adapters",
                          "adapters.json")


def test_a_campaign_with_nothing_committed_is_one_error_line(tmp_path):
    from orchestrator.manifest import Manifest
    from orchestrator.spec import load_spec

    root = tmp_path / "fresh"
    Manifest.create(root, load_spec(str(REPO / "configs/campaigns/toy.yaml"), [f"storage_path={root}"]))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red star\n")
    assert_one_line_error(erase("guard", str(root), str(prompts)), "no committed concept", "nothing to guard")
    assert not (root / "exports").exists()


def test_a_run_decides_every_prompt_writes_the_images_kept_and_appends_the_log(run, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a small red star\n# skipped\n\na big blue box\na large green diamond\nSTAR, crimson\n")
    out = tmp_path / "out"
    result = erase("guard", str(run), str(prompts), "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [r[1] for r in rows] == ["blocked_prompt", "blocked_prompt", "allowed", "blocked_prompt"], result.stdout
    assert "3 blocked_prompt" in result.stdout and sorted(p.name for p in out.glob("*.png")) == ["0002.png"]
    log = out / "audit.jsonl"
    first = log.read_bytes()
    records, torn = read_records(log)
    assert not torn and [r["verdict"] for r in records] == ["blocked_prompt", "blocked_prompt", "allowed",
                                                            "blocked_prompt"]
    assert records[2]["image"] == "0002.png" and records[2]["adapters_active"] == []
    bundle = run / "exports" / "toy-step2-lora-per-concept"
    assert json.loads((bundle / "guard.json").read_text())["campaign"] == "toy"
    again = erase("guard", str(run), str(prompts), "--out", str(out), "--on-detect", "flag", "--policy", "all")
    assert again.returncode == 0, again.stderr
    assert log.read_bytes().startswith(first)
    records, _ = read_records(log)
    assert len(records) == 8 and {r["policy"] for r in records[4:]} == {"all"}
    assert [r["verdict"] for r in records[4:]] == ["flagged", "flagged", "allowed", "flagged"]


def test_a_damaged_commit_is_refused_before_anything_is_exported_or_drawn(run, tmp_path):
    import shutil

    copy = tmp_path / "toy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("exports"))
    delta = copy / "steps/1-star/attempt-1/delta.safetensors"
    data = bytearray(delta.read_bytes())
    data[-1] ^= 0xFF
    delta.write_bytes(bytes(data))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a diamond\n")
    result = erase("guard", str(copy), str(prompts), "--out", str(tmp_path / "out"))
    assert_one_line_error(result, "steps/1-star/attempt-1/delta.safetensors", "sha256 differs")
    assert result.stdout == "" and not (copy / "exports").exists() and not (tmp_path / "out").exists()
