"""A single-process fine-tune killed mid-erase continues from its last checkpoint when the attempt is redone.

The kill is an error raised right after a checkpoint is published (what a SIGKILL there leaves on disk: the
checkpoint, no delta); the redo of the same request in the same attempt directory must start after that
checkpoint and end with the delta an unbroken erase writes.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from jobs.deltas.delta import load_delta
from jobs.step import run_erase
from jobs.training.step_checkpoints import DirectoryCheckpoints
from erasecore.contracts import ParallelSpec, StepRequest, ValidationSpec

STEPS, EVERY = 12, 5


class Died(Exception):
    pass


class DiesAfterFirstSave(DirectoryCheckpoints):
    def save(self, step, directory, metrics):
        super().save(step, directory, metrics)
        raise Died(f"killed after the checkpoint of step {step}")


def request(out: Path) -> StepRequest:
    return StepRequest(campaign="resume", step=1, attempt=1, concept="star", method="esd-x",
                       hparams={"steps": STEPS, "batch": 4, "preserve_weight": 0.0}, model="toyworld", parents=(), out_dir=str(out),
                       validation=ValidationSpec(judge="toyworld"),
                       parallel=ParallelSpec(num_workers=1, checkpoint_every=EVERY))


def test_a_fine_tune_killed_mid_erase_resumes_from_its_checkpoint_with_the_unbroken_delta(tmp_path):
    lines: list[str] = []
    whole = run_erase(request(tmp_path / "whole"), log=lines.append)
    assert not (tmp_path / "whole" / "checkpoints").exists()     # the delta supersedes the checkpoints
    assert not any("resumed from checkpoint" in line for line in lines)

    out = tmp_path / "broken"
    with pytest.raises(Died):
        run_erase(request(out), log=lambda *_: None, checkpoints=DiesAfterFirstSave(out / "checkpoints"))
    assert not (out / "delta.safetensors").exists()
    assert [p.name for p in (out / "checkpoints").iterdir()] == [f"step-{EVERY - 1:09d}"]

    lines.clear()
    again = run_erase(request(out), log=lines.append)
    assert any(f"resumed from checkpoint at step {EVERY - 1}" in line for line in lines), lines
    a, b = load_delta(whole.path)[0], load_delta(again.path)[0]
    assert a.keys() == b.keys() and a
    # Same process, same operations in the same order, the optimizer's moments and the RNG restored: the
    # redo replays the unbroken run exactly (restarted moments or a re-drawn batch would differ everywhere).
    for k in a:
        assert torch.equal(a[k], b[k]), k
