"""A small hyperparameter grid for one method on one concept, validated like benches/methods.py.

    python benches/sweep.py --method fmn [--concept square] [--seeds 2] [--settings "steps=35,lr=2e-4;steps=10"]

Each setting is a set of hyperparameters over the method's catalog defaults (a setting may name a
`variant`); "" is the defaults themselves. Without --settings the method's grid below runs (chosen from
why the method fails at its defaults: see each grid's comment). Every setting erases the concept and is
validated by the same suite as benches/methods.py (early stop off), gated by its `passes`. Prints one
row per setting (setting, seconds, forgetting, retain, retain_near, retain_far, pass) and writes
bench-results/sweep-<method>.json (the rows of benches/methods.py's row(), plus the setting).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benches.methods import row  # noqa: E402
from erasecore.catalog import get  # noqa: E402
from erasecore.contracts import StepRequest, ValidationSpec  # noqa: E402
from jobs.step import run_step  # noqa: E402

GRIDS = {
    # FMN has no preservation term: every step moves attn2's K/V for all tokens, so the defaults (35 steps at
    # lr 2e-3) cost neighbours (Retain 0.80) while erasing 74%; at lr 5e-4 it erases nothing (0.02 / 0.97).
    # Between the two, and longer or larger-batch runs at the default lr.
    "fmn": ["", "lr=1e-3", "lr=1.5e-3", "steps=70,lr=1e-3", "steps=70", "steps=20,lr=4e-3", "batch=16",
            "steps=50,lr=1.5e-3"],
    # ESD-u trains every non-cross-attention weight at lr 1e-3: the change that erases the square moves what
    # the preservation term (weight 1) does not hold (Retain 0.81). A smaller lr keeps retain and erases less;
    # a heavier preservation term at lr 3e-4 keeps more; a larger eta pushes forgetting back up.
    "esd-u": ["", "lr=3e-4", "lr=3e-4,preserve_weight=4", "preserve_weight=4", "lr=1e-4,steps=300",
              "lr=3e-4,eta=2,preserve_weight=4", "lr=3e-4,eta=4,preserve_weight=4", "lr=5e-4,eta=2,preserve_weight=4",
              "lr=3e-4,eta=4,preserve_weight=8", "lr=3e-4,eta=3,preserve_weight=4,steps=250",
              "lr=3e-4,eta=4,preserve_weight=4,steps=100", "lr=2e-4,eta=6,preserve_weight=8",
              "lr=3e-4,eta=4,preserve_weight=4,batch=32"],
}


def parse(setting: str, method: str) -> dict:
    """"steps=35,lr=2e-4" -> {"steps": 35, "lr": 0.0002}, typed by the catalog's params."""
    types = {p.name: p.type for p in get(method).params}
    out = {}
    for item in filter(None, (s.strip() for s in setting.split(","))):
        name, _, value = item.partition("=")
        kind = types.get(name, str)
        out[name] = value if kind is str else (value.lower() == "true" if kind is bool else kind(float(value)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", required=True)
    ap.add_argument("--concept", default="square")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--settings", help="';'-separated settings (default: the method's grid)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    settings = args.settings.split(";") if args.settings is not None else GRIDS[args.method]
    out = args.out or Path(f"bench-results/sweep-{args.method}.json")
    work = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    spec = ValidationSpec(seeds=args.seeds, early_stop=False, judge="toyworld")
    rows, t0 = [], time.time()
    for k, setting in enumerate(settings):
        hparams = parse(setting, args.method)
        req = StepRequest("sweep", k + 1, 1, args.concept, args.method, hparams, "toyworld", (), str(work / f"s{k}"),
                          validation=spec, cache_dir=str(work / "cache"))
        r = {"setting": setting or "defaults", "hparams": hparams,
             **row(args.method, run_step(req, log=lambda *a: None))}
        rows.append(r)
        print(f"  {r['setting']}: forgetting {r['forgetting']} retain {r['retain']} ({r['seconds']}s)", flush=True)
    cols = ["setting", "seconds", "forgetting", "retain", "retain_near", "retain_far", "gate"]
    print(f"\n{args.method} on {args.concept!r}, {rows[0]['images']} images per gate, {time.time() - t0:.0f}s in all")
    print(f"{cols[0]:>34} " + " ".join(f"{c:>11}" for c in cols[1:]))
    for r in rows:
        print(f"{r['setting']:>34} " + " ".join(f"{str(r[c]):>11}" for c in cols[1:]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([{**r, "concept": args.concept, "seeds": args.seeds} for r in rows], indent=1))
    print(f"wrote {out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
