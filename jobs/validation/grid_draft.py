"""A gate's before/after grid, drawn while the gate runs (the file format is jobs/validation/grids.py).

    grid = GridDraft(suite, spec, log)
    grid.draw_base(pipe, cache, model)    # the base model's images, cached like the baseline
    ...stack the candidate...
    grid.finish(pipe, out_dir)            # the erased model's images -> grid.png + grid.json
"""
from __future__ import annotations

import hashlib
import time

from jobs.validation.grids import pick, write_grid
from jobs.validation.validator import frozen_tag, generate


class GridDraft:
    """The before/after grid of one gate. Never fails the gate: a failure is one log line."""

    def __init__(self, suite, spec, log):
        self.suite, self.spec, self.log = suite, spec, log
        self.keys = pick(suite)
        self.before = None
        self.seconds = 0.0

    def draw_base(self, pipe, cache, model: str) -> None:
        """The base model's images of the grid's keys, cached like the baseline (the same on every gate)."""
        t0 = time.time()
        try:
            name = f"grid-{cache.key(model, self.suite, self.spec, frozen=frozen_tag(pipe))}-" \
                   f"{hashlib.sha256(repr(self.keys).encode()).hexdigest()[:8]}"
            self.before = cache.load_images(name)
            if self.before is None or len(self.before) != len(self.keys):
                self.before = generate(pipe, self.suite, self.keys, self.spec)
                cache.save_images(name, self.before)
        except Exception as e:   # noqa: BLE001 - a grid is a picture, not a gate input
            self.log(f"grid: base images failed, no grid for this attempt ({type(e).__name__}: {e})")
        self.seconds += time.time() - t0

    def finish(self, pipe, out_dir) -> None:
        if self.before is None:
            return
        t0 = time.time()
        try:
            after = generate(pipe, self.suite, self.keys, self.spec)
            path = write_grid(out_dir, self.suite, self.keys, self.before, after)
        except Exception as e:   # noqa: BLE001
            self.log(f"grid: not written ({type(e).__name__}: {e})")
            return
        self.seconds += time.time() - t0
        self.log(f"grid: {len(self.keys)} prompts, base and erased, {self.seconds:.1f}s -> {path}")
