"""`erase judge-check`, run as a user would (a subprocess) on the toy model: the toy campaign's judge sees every
concept; a concept the base model does not draw is refused with one error line before anything is erased, and
validation.allow_weak_judge flags it instead (from the cache the first check left: nothing drawn again)."""
from __future__ import annotations

import json
from hashlib import sha256

import pytest
import yaml

from erasecore.models import toyworld_dir
from tests.e2e.cli_runner import assert_one_line_error, erase

pytestmark = pytest.mark.e2e

FAST = ("validation.seeds=1", "validation.max_prompts_per_group=4")
# One of hourglass's held-out compositions (never rendered in training): the base model draws it in 3 of 28
# images at 2 seeds, 0 of 14 at 1 (docs/models-and-judges.md, the judge self-check); plain hourglass passes.
UNSEEN = "large red outline hourglass"


@pytest.fixture(autouse=True, scope="module")
def passive_threads():
    """Torch's OpenMP threads sleep instead of spinning while they wait: on a machine whose cores other jobs hold,
    spinning made the toy pipeline 45x slower here (8 images: 59 s against 1.3 s with 2 threads)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_WAIT_POLICY", "PASSIVE")   # the `erase` subprocesses inherit it
        yield


def table(stdout: str) -> list[list[str]]:
    """The rows under the table's header: concept first, verdict last."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("concept "))
    return [line.split("  ") for line in lines[start + 1:]]


def test_the_toy_campaigns_judge_sees_every_concept(tmp_path):
    result = erase("judge-check", "configs/campaigns/toy.yaml", *FAST, f"storage_path={tmp_path / 'toy'}")
    assert result.returncode == 0 and "error" not in result.stderr, result.stdout + result.stderr
    evaluator = sha256((toyworld_dir() / "evaluator" / "evaluator.safetensors").read_bytes()).hexdigest()
    assert f"judge toyworld (evaluator.safetensors sha256 {evaluator[:12]})" in result.stdout
    rows = table(result.stdout)
    assert [r[0].strip() for r in rows] == ["star", "square", "round"]
    assert all(r[-1].strip() == "ok" for r in rows), result.stdout
    assert not (tmp_path / "toy" / "manifest.json").exists()   # a check, not a run


@pytest.fixture(scope="module")
def unseen(tmp_path_factory):
    """(campaign file, storage path, the first check's result) for a campaign erasing UNSEEN."""
    root = tmp_path_factory.mktemp("unseen")
    path = root / "campaign.yaml"
    path.write_text(yaml.safe_dump({"name": "unseen", "model": "toyworld", "concepts": [UNSEEN],
                                    "storage_path": str(root / "runs")}))
    return path, root / "runs", erase("judge-check", str(path), *FAST)


def test_a_concept_the_base_model_does_not_draw_is_refused_before_anything_is_erased(unseen):
    _, storage, result = unseen
    assert_one_line_error(result, "judge-check", repr(UNSEEN), "barely draws it", "validation.allow_weak_judge")
    (row,) = table(result.stdout)   # the table first, then the error line
    assert row[0].strip() == UNSEEN and row[-1].startswith("refused: the base model barely draws it")
    assert not (storage / "manifest.json").exists() and not (storage / "steps").exists()


def test_allow_weak_judge_flags_the_concept_instead(unseen):
    path, _, _ = unseen
    result = erase("judge-check", str(path), *FAST, "validation.allow_weak_judge=true")
    assert result.returncode == 0 and "error" not in result.stderr, result.stdout + result.stderr
    (row,) = table(result.stdout)
    assert row[-1].startswith("flagged: the base model barely draws it")
    assert "base-model images" not in result.stdout   # what the first check saw came from its cache


def test_a_run_of_that_campaign_is_refused_before_its_first_erase(unseen):
    path, storage, _ = unseen
    result = erase("run", str(path), *FAST)
    assert_one_line_error(result, "judge-check", repr(UNSEEN), "barely draws it")
    assert "refused: the base model barely draws it" in result.stdout   # the table, printed by the run
    journal = json.loads((storage / "manifest.json").read_text())
    assert journal["status"] == "stopped" and "judge-check" in journal["stop_reason"]
    assert journal["attempts"] == [] and not (storage / "steps").exists()
    assert [c["verdict"] for c in journal["judge_checks"][0]["check"]["concepts"]] == ["refused"]
