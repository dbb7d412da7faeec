"""The loop follows a phase's progress file while the phase runs and tells its callbacks (a fake executor)."""
from __future__ import annotations

import json
from pathlib import Path

from erasecore.phase_progress import ProgressWriter
from orchestrator.live import LIVE_FILE, LiveStatus
from orchestrator.loop import Callbacks, CampaignLoop
from orchestrator.manifest import Manifest
from orchestrator.preflight import preflight
from orchestrator.progress import ProgressLines
from tests.unit.test_campaign import ACCEPT, FakeExecutor, spec


class Stepping(FakeExecutor):
    """Erase writes 4 train records and looks (watch) after each, as the Ray executor's poll does."""

    def __init__(self, m, verdicts, seen):
        super().__init__(m, verdicts)
        self.seen = seen

    def erase(self, a, request, watch=None):
        progress = ProgressWriter(request.out_dir, "erase")
        Path(request.out_dir).mkdir(parents=True, exist_ok=True)
        progress.write("start")
        for step in range(1, 5):
            progress.write("train", step=step, total=4, loss=1.0 / step, lr=1e-3, steps_per_s=10.0)
            watch()
            self.seen.append(("executor looked", step))
        progress.write("end", ok=True)      # written after the last look: the loop's own last look finds it
        return super().erase(a, request)

    def validate(self, a, request, candidate, watch=None):
        progress = ProgressWriter(request.out_dir, "validate")
        progress.write("candidate", images=8, images_total=16, images_per_s=4.0)
        return super().validate(a, request, candidate)


class Recorder(Callbacks):
    def __init__(self, seen):
        self.seen = seen

    def phase_progress(self, a, phase, records):
        self.seen.append((phase, [(r.stage, r.step or r.images) for r in records]))


class Broken(Callbacks):
    def phase_progress(self, a, phase, records):
        raise RuntimeError("display gone")


def test_records_reach_the_callbacks_while_the_phase_runs(tmp_path):
    s = spec(tmp_path, "concepts=[star]")
    m = Manifest.create(s.storage_path, s)
    seen: list = []
    lines: list[str] = []
    clock = iter(range(0, 10_000, 10))   # every look is 10 s later: each tenth of the phase gets its line
    callbacks = [Broken(), Recorder(seen), ProgressLines(s, m, lines.append, now=lambda: float(next(clock))),
                 LiveStatus(m, min_interval_s=0.0)]
    outcome = CampaignLoop(preflight(s, run=False), m, Stepping(m, {"star": [ACCEPT]}, seen), callbacks).run()

    assert outcome.status == "finished"
    erase = [entry for entry in seen if entry[0] in ("erase", "executor looked")]
    # Each record is told before the executor goes on, i.e. while the phase still runs; the end comes last.
    assert erase == [("erase", [("start", None), ("train", 1)]), ("executor looked", 1),
                     ("erase", [("train", 2)]), ("executor looked", 2), ("erase", [("train", 3)]),
                     ("executor looked", 3), ("erase", [("train", 4)]), ("executor looked", 4),
                     ("erase", [("end", None)])]
    assert ("validate", [("candidate", 8)]) in seen
    progress_lines = [line for line in lines if " steps (" in line]
    assert any("erase  1/4 steps (25%)  loss 1 lr 0.001" in line for line in progress_lines), lines
    assert any("ProgressLines" not in line and "Broken stops showing the progress of step 1 erase" in line
               for line in lines), lines   # a failing watcher is named once, and the campaign goes on
    live = json.loads((Path(s.storage_path) / LIVE_FILE).read_text())
    assert live["ended"] == "finished"
