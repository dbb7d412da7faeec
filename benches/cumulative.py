"""Gate cost per step of a long campaign: bounded cumulative checks keep it flat in the step index.

    .venv/bin/python benches/cumulative.py [configs/campaigns/toy-long.yaml] [runs/toy-long]

Prints, per step, the gate's planned images (suite prompts x seeds: what a gate without early stop
draws), of which the cumulative re-checks, and the same without a budget (every earlier concept whole,
as before issue 12), both as if every earlier concept had been committed (the worst case); with a run
directory also the images each gate really drew (only committed concepts are re-checked, and early
stop ends some gates sooner) and the final sweep. Writes bench-results/cumulative.json with
`images_per_gate_last_over_first` (planned, budgeted: ~1 when flat) and the unbounded ratio.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.toyworld.world import load_world  # noqa: E402
from jobs.toyworld.suite import build_suite  # noqa: E402
from erasecore.cumulative import is_sweep, window  # noqa: E402
from orchestrator.manifest import Manifest  # noqa: E402
from orchestrator.spec import load_spec  # noqa: E402

OUT = Path("bench-results/cumulative.json")


def planned(spec, budget: int) -> list[dict]:
    """Per step: the suite's images when every earlier concept was committed (the campaign's worst case)."""
    world, v = load_world(), spec.validation
    rows = []
    for k, concept in enumerate(spec.concepts, start=1):
        earlier = tuple(spec.concepts[:k - 1])
        suite = build_suite(world, concept, earlier, v.max_prompts_per_group, step=k, cumulative_budget=budget,
                            sweep_every=v.sweep_every)
        cumulative = sum(i.group.startswith("cumulative:") for i in suite.items)
        rows.append({"step": k, "concept": concept, "images": len(suite.items) * v.seeds,
                     "cumulative_images": cumulative * v.seeds, "sweep": is_sweep(k, v.sweep_every),
                     "window": window(len(earlier), budget)})
    return rows


def measured(run: Path) -> tuple[dict[int, int], dict]:
    """Images each step's last gate drew (early stop ends some sooner), and the final sweep's, from a run's journal."""
    history = Manifest.open(run).history
    drawn = {a.step: a.report.images_generated for a in sorted(history.attempts, key=lambda a: a.attempt)
             if a.report is not None}
    sweep = history.sweeps[-1] if history.sweeps else None
    final = {} if sweep is None else {"concepts": len(sweep.concepts), "rebounds": list(sweep.rebounds),
                                      "images": sweep.report.images_generated if sweep.report else 0,
                                      "error": sweep.error}
    return drawn, final


def main(argv: list[str]) -> int:
    spec = load_spec(argv[0] if argv else "configs/campaigns/toy-long.yaml")
    run = Path(argv[1]) if len(argv) > 1 else Path(spec.storage_path)
    bounded = planned(spec, spec.validation.cumulative_budget)
    unbounded = planned(spec, 10 ** 9)
    drawn, final = measured(run) if Manifest.exists(run) else ({}, {})
    print(f"{'step':>4} {'concept':<18} {'images':>6} {'cumul':>5} {'window':>6} {'unbounded':>9} {'drawn':>5}")
    for b, u in zip(bounded, unbounded):
        mark = " sweep" if b["sweep"] else ""
        print(f"{b['step']:>4} {b['concept']:<18} {b['images']:>6} {b['cumulative_images']:>5} {b['window']:>6} "
              f"{u['images']:>9} {drawn.get(b['step'], '-'):>5}{mark}")
    flat = [b["images"] for b in bounded if not b["sweep"]]
    result = {
        "campaign": spec.name, "steps": len(bounded), "cumulative_budget": spec.validation.cumulative_budget,
        "sweep_every": spec.validation.sweep_every, "seeds": spec.validation.seeds,
        "images_per_gate": [b["images"] for b in bounded],
        "cumulative_images_per_gate": [b["cumulative_images"] for b in bounded],
        "images_per_gate_unbounded": [u["images"] for u in unbounded],
        "images_per_gate_last_over_first": round(bounded[-1]["images"] / bounded[0]["images"], 3),
        "images_per_gate_max_over_min_outside_sweeps": round(max(flat) / min(flat), 3),
        "unbounded_last_over_first": round(unbounded[-1]["images"] / unbounded[0]["images"], 3),
        "total_images_planned": sum(b["images"] for b in bounded),
        "total_images_unbounded": sum(u["images"] for u in unbounded),
        "window_at_last_step": bounded[-1]["window"],
        "drawn_per_gate": {str(k): v for k, v in sorted(drawn.items())},
        "final_sweep": final,
    }
    print({k: result[k] for k in ("images_per_gate_last_over_first", "images_per_gate_max_over_min_outside_sweeps",
                                  "unbounded_last_over_first", "total_images_planned", "total_images_unbounded",
                                  "window_at_last_step")})
    if final:
        print(f"final sweep: {final}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
