"""Progress records in the attempt directory: one line per record, complete lines only, per phase, rank 0 only."""
from __future__ import annotations

import json

from erasecore.phase_progress import (PROGRESS_FILE, NullProgress, ProgressFollower, ProgressWriter,
                                              current_run, parse, read_records)


def test_a_record_is_one_json_line_with_only_its_fields(tmp_path):
    writer = ProgressWriter(tmp_path, "erase", clock=lambda: 100.0)
    writer.write("train", step=3, total=10, loss=0.25, lr=5e-4, grad_norm=None, steps_per_s=2.0)
    (line,) = (tmp_path / PROGRESS_FILE).read_text().splitlines()
    assert json.loads(line) == {"t": 100.0, "phase": "erase", "stage": "train", "step": 3, "total": 10,
                                "loss": 0.25, "lr": 5e-4, "steps_per_s": 2.0}
    record = parse(line)
    assert (record.done, record.of, record.unit, record.fraction, record.rate) == (3, 10, "steps", 0.3, 2.0)


def test_a_nan_loss_is_written_as_missing_not_as_invalid_json(tmp_path):
    ProgressWriter(tmp_path, "erase").write("train", step=1, total=2, loss=float("nan"))
    (record,) = read_records(tmp_path)
    assert record.loss is None and record.step == 1


def test_other_ranks_and_null_progress_write_nothing(tmp_path):
    assert ProgressWriter(tmp_path, "erase", enabled=False).write("start") is None
    NullProgress().write("train", step=1)
    assert not (tmp_path / PROGRESS_FILE).exists()


def test_the_follower_reads_complete_lines_of_its_phase_from_where_the_file_ended(tmp_path):
    old = ProgressWriter(tmp_path, "erase")
    old.write("start", note="a crashed run of this attempt")
    follower = ProgressFollower(tmp_path, "erase")
    assert follower.read_new() == []                      # what was there before is not news
    ProgressWriter(tmp_path, "erase").write("train", step=1, total=4)
    ProgressWriter(tmp_path, "validate").write("candidate", images=8, images_total=16)
    with open(tmp_path / PROGRESS_FILE, "a") as f:       # a writer caught halfway through a line
        f.write('{"t": 1, "phase": "erase", "stage": "tra')
    assert [(r.stage, r.step) for r in follower.read_new()] == [("train", 1)]
    with open(tmp_path / PROGRESS_FILE, "a") as f:
        f.write('in", "step": 2, "total": 4, "future_field": 1}\nnot json\n')
    assert [(r.stage, r.step) for r in follower.read_new()] == [("train", 2)]
    assert follower.read_new() == []
    assert [r.phase for r in read_records(tmp_path)] == ["erase", "erase", "validate", "erase"]


def test_a_missing_file_is_no_progress(tmp_path):
    assert ProgressFollower(tmp_path / "nowhere", "erase").read_new() == []
    assert read_records(tmp_path / "nowhere") == []


def test_a_rerun_phase_starts_over():
    lines = ['{"t": 1, "phase": "erase", "stage": "start"}', '{"t": 2, "phase": "erase", "stage": "train", "step": 5}',
             '{"t": 3, "phase": "erase", "stage": "start"}', '{"t": 4, "phase": "erase", "stage": "train", "step": 1}']
    records = [parse(line) for line in lines]
    assert [r.t for r in current_run(records)] == [3, 4]
