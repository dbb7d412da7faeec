"""Orchestrator overhead: the same toy campaign through Ray + journal + gate, and as bare steps.

    python benches/orchestrator.py [CAMPAIGN.yaml] [key=value ...]

First the campaign runs through the orchestrator (embedded Ray start-up included); then every
attempt it made is replayed by calling the worker's run_step directly, in order, with the same
requests. Prints campaign seconds, direct seconds and their ratio (target <= 1.15); writes
bench-results/orchestrator.json (overhead_ratio, campaign_seconds, direct_seconds).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from launch import cluster  # noqa: E402

cluster.configure()  # before anything imports ray: loopback binding and token auth are read at import

from erasecore.codec import from_json  # noqa: E402
from erasecore.contracts import StepRequest  # noqa: E402
from jobs.step import run_step  # noqa: E402
from orchestrator.ray.driver import run_campaign  # noqa: E402
from orchestrator.spec import load_spec  # noqa: E402


def campaign(config: str, overrides: list[str], storage: Path) -> float:
    spec = load_spec(config, overrides + [f"storage_path={storage}", "tracking.mode=disabled"])
    t0 = time.time()
    with cluster.session():
        outcome = run_campaign(spec, echo=lambda line: None)
    print(f"campaign: {outcome.status}, committed {list(outcome.committed)}", flush=True)
    return time.time() - t0


def direct(storage: Path, work: Path) -> tuple[float, int]:
    """Replay every attempt's request in order, in this process, with a fresh baseline cache.

    Parents stay the campaign's committed files, so each replayed step sees the same model.
    """
    requests = sorted(storage.glob("steps/*/attempt-*/request.json"),
                      key=lambda p: json.loads(p.read_text())["step"] * 100 + json.loads(p.read_text())["attempt"])
    t0 = time.time()
    for path in requests:
        req = from_json(StepRequest, path.read_text())
        run_step(replace(req, out_dir=str(work / path.parent.relative_to(storage)), cache_dir=str(work / "cache")),
                 log=lambda *a: None)
    return time.time() - t0, len(requests)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default="configs/campaigns/toy.yaml")
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--out", type=Path, default=Path("bench-results/orchestrator.json"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-orchestrator-"))
    storage, work = tmp / "campaign", tmp / "direct"
    c = campaign(args.config, args.overrides, storage)
    d, attempts = direct(storage, work)
    ratio = c / d
    print(f"{'attempts':>10} {'campaign_s':>11} {'direct_s':>9} {'overhead_ratio':>15}")
    print(f"{attempts:>10} {c:11.1f} {d:9.1f} {ratio:15.3f}   (target <= 1.15)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"overhead_ratio": ratio, "campaign_seconds": c, "direct_seconds": d,
                                    "attempts": attempts, "config": args.config, "overrides": args.overrides}, indent=1))
    print(f"wrote {args.out}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
