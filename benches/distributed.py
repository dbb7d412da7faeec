"""A fine-tune step as a Ray Train worker group: 1 vs 2 workers, DDP vs DeepSpeed ZeRO-2, on the toy model.

    python benches/distributed.py [--steps 60] [--batch 16] [--cpus 2]

Every layout gets the same CPUs in all (--cpus, split over its workers) and the same global batch.
Prints a table of seconds per optimizer step (the training loop only, worker start-up excluded),
the step's wall seconds (start-up included), peak RSS per worker, and the largest difference of
the delta from the single-worker DDP delta; writes bench-results/distributed.json with rows
{backend, workers, seconds, wall_seconds, peak_rss_mb, delta_max_abs_diff_vs_single}.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from launch import cluster  # noqa: E402

cluster.configure()  # before anything imports ray

from erasecore.contracts import ParallelSpec, StepRequest  # noqa: E402
from jobs.deltas.delta import load_delta  # noqa: E402
from orchestrator.ray.train import fit_erase  # noqa: E402

LAYOUTS = [("ddp", 1), ("ddp", 2), ("deepspeed-zero2", 1), ("deepspeed-zero2", 2)]


def run(backend: str, workers: int, args, work: Path) -> tuple[dict, dict]:
    strategy = "deepspeed" if backend.startswith("deepspeed") else "ddp"
    ds = json.loads((REPO / "configs/deepspeed/zero2.json").read_text()) if strategy == "deepspeed" else {}
    out = work / f"{backend}-{workers}"
    req = StepRequest(campaign="bench", step=1, attempt=1, concept="star", method="esd-x",
                      hparams={"steps": args.steps, "batch": args.batch}, model="toyworld", parents=(),
                      out_dir=str(out), parallel=ParallelSpec(num_workers=workers, strategy=strategy,
                                                              deepspeed_config=ds, cpus_per_worker=args.cpus / workers))
    t0 = time.time()
    ref = fit_erase(req)
    wall = time.time() - t0
    stats = [json.loads((out / f"erase_stats.rank{r}.json").read_text()) if workers > 1
             else json.loads((out / "erase_stats.json").read_text()) for r in range(workers)]
    row = {"backend": backend, "workers": workers,
           "seconds": max(s["train_seconds"] for s in stats) / args.steps,
           "wall_seconds": wall, "peak_rss_mb": max(s["peak_rss_mb"] for s in stats)}
    return row, load_delta(ref.path)[0]


def max_abs_diff(a: dict, b: dict) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a) if a.keys() == b.keys() else float("inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "bench-results" / "distributed.json")
    args = ap.parse_args()
    rows, reference = [], None
    with tempfile.TemporaryDirectory() as tmp, cluster.session(num_cpus=args.cpus):
        for backend, workers in LAYOUTS:
            row, delta = run(backend, workers, args, Path(tmp))
            reference = reference if reference is not None else delta
            row["delta_max_abs_diff_vs_single"] = max_abs_diff(reference, delta)
            rows.append(row)
            print(f"  {backend} x{workers}: {row['seconds']:.3f} s/step", flush=True)
    scale = max(t.abs().max().item() for t in reference.values())
    print(f"\nESD-x on the toy model, {args.steps} steps, global batch {args.batch}, {args.cpus} CPUs per step "
          f"(largest delta entry {scale:.2e})")
    print(f"{'backend':<17}{'workers':>8}{'s/step':>9}{'wall s':>9}{'peak RSS MB/worker':>20}{'max |diff| vs 1':>17}")
    for r in rows:
        print(f"{r['backend']:<17}{r['workers']:>8}{r['seconds']:>9.3f}{r['wall_seconds']:>9.1f}"
              f"{r['peak_rss_mb']:>20.0f}{r['delta_max_abs_diff_vs_single']:>17.2e}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
