"""Scheduler: 100 concepts on a fake 8-GPU node, serial vs sharded vs sharded + speculative + parallel attempts
(and the same with fine-tunes as distributed steps on 4 GPUs).

    python benches/scheduler.py [--concepts 100] [--scale 500] [--reject 0.2] [--modes serial,sharded,pipelined,workers]

The real loops (orchestrator/loop.py CampaignLoop, orchestrator/pipeline.py PipelinedLoop), journal,
gate and Ray scheduling (shard_count over the cluster's GPUs; a gate drawn look by look on up to that many
GPUs, as orchestrator/ray/shards.py draws it; one GPU per erase), on a
ray.cluster_utils.Cluster whose node says it has 8 GPUs. Only the phases are synthetic: each sleeps
for its cost-model seconds divided by --scale, and a gate's verdict is drawn per (concept, method,
hparams) at --reject. Cost model (model seconds, SD 1.x; see COST below and the README):

- seconds per image: 1.6 (SD 1.5, A100, 512 px, 50 steps, fp16, batch 1: published figure).
- images per gate at step k: 500 + min(2 (k - 1), 80): the target suite (a 500-image gate) plus the
  earlier concepts' cumulative rows under a fixed cumulative budget of 80 images. The base model's
  images for the same suite are drawn too (the baseline cache is keyed by suite, which changes per step).
- early stop: a rejected gate draws 37% of its candidate images (the toy world's measured early stop:
  63% fewer images on clear rejects); a passing gate draws all.
- erase seconds: the toy world's measured erase/gate ratio times the SD gate's candidate seconds at
  step 1: UCE 3.58 s / 11.96 s (260 images x 0.046 s), ESD-x 30.73 s / 11.96 s.
- retry policy: the project's (UCE, UCE at double strength, then ESD-x), at most 3 attempts.

Prints wall time per mode, the ideal (the serial run's GPU-seconds / GPUs), the erase-chain bound (no
schedule beats it: chain_bound), GPU utilisation, images per gate at steps 1, 50, 100, and an 8x H100
projection (H100_SPEEDUP over the A100 figures); writes bench-results/scheduler.json (ratio_to_ideal,
images_per_gate_step100_over_step1, chain_bound_s, ratio_to_chain_bound, per mode rows).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from launch import cluster  # noqa: E402

cluster.configure()  # before anything imports ray

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from orchestrator.core.contracts import DeltaRef, Estimate, GateReport  # noqa: E402
from orchestrator.loop import CampaignLoop, PhaseOutput  # noqa: E402
from orchestrator.manifest import Manifest  # noqa: E402
from orchestrator.pipeline import PipelinedLoop  # noqa: E402
from orchestrator.preflight import preflight  # noqa: E402
from orchestrator.ray.shards import shard_count  # noqa: E402
from orchestrator.spec import load_spec  # noqa: E402

GPUS = 8
COST = {"seconds_per_image": 1.6, "gate_images_step1": 500, "cumulative_images_per_concept": 2,
        "cumulative_budget": 80, "early_stop_fraction_rejected": 0.37,
        "erase_over_gate": {"uce": 3.58 / (260 * 0.046), "esd-x": 30.73 / (260 * 0.046)},
        "h100_speedup": 2.0, "erase_seconds": {},
        # mode "workers": fine-tune erases as distributed steps (resources.num_workers) of this many GPUs at
        # this data-parallel efficiency (assumed; the toy bench measures exactness, not GPU scaling)
        "finetune_workers": 4, "data_parallel_efficiency": 0.9}
CLOSED_FORM = ("uce",)   # one process whatever num_workers says
# --erase published: UCE's edit is "under 1 s" (published) plus loading and saving SD 1.5, taken as 30 s
# (an assumption); ESD-x 6163 s per concept (UnlearnCanvas, published).
PUBLISHED_ERASE = {"uce": 30.0, "esd-x": 6163.0}


LOOK_IMAGES = 64   # validation.batch_size: the unit a shard draws


def _looks(seconds: float) -> list[float]:
    """A gate's GPU-seconds as looks of LOOK_IMAGES images (the last one partial)."""
    look = LOOK_IMAGES * COST["seconds_per_image"]
    whole, rest = divmod(seconds, look)
    return [look] * int(whole) + ([rest] if rest > 1e-9 else [])


def gate_images(step: int) -> int:
    return COST["gate_images_step1"] + min(COST["cumulative_images_per_concept"] * (step - 1),
                                           COST["cumulative_budget"])


def erase_seconds(method: str) -> float:
    if COST["erase_seconds"]:
        return COST["erase_seconds"][method]
    return COST["erase_over_gate"][method] * COST["gate_images_step1"] * COST["seconds_per_image"]


def erase_wall(method: str, workers: int) -> float:
    """An erase's wall seconds on `workers` GPUs (a closed form stays on one)."""
    if workers <= 1 or method in CLOSED_FORM:
        return erase_seconds(method)
    return erase_seconds(method) / (workers * COST["data_parallel_efficiency"])


def rejected(concept: str, method: str, hparams: dict, rate: float) -> bool:
    h = hashlib.sha256(repr((concept, method, sorted(hparams.items()))).encode()).hexdigest()
    return int(h[:8], 16) / 0xFFFFFFFF < rate


@ray.remote(num_cpus=0)
def hold(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


class Synthetic:
    """Phases as Ray tasks that hold GPUs for their cost-model time; both executor interfaces."""

    def __init__(self, scale: float, reject: float, shards: int, reserve: float, workers: int = 1):
        self.scale, self.reject, self.shards, self.reserve, self.workers = scale, reject, shards, reserve, workers
        self.gpu_seconds = 0.0           # model seconds x GPUs, of every phase that ran (discarded ones too)
        self.running: dict = {}          # ticket -> (refs of its one-GPU tasks, attempt, request, phase, seconds)
        self.queues: dict = {}           # gate ticket -> its looks not started yet (model seconds each)
        self.caps: dict = {}             # gate ticket -> its shards: looks in flight at most
        self.count = 0

    def submit(self, a, request, phase, candidate=None, watch=None):
        self.count += 1
        if phase == "erase":
            shards = 1 if a.method in CLOSED_FORM else self.workers
            seconds = erase_wall(a.method, shards) * shards   # GPU-seconds, split evenly over its workers
            refs = [hold.options(num_gpus=1).remote(seconds / shards / self.scale) for _ in range(shards)]
        else:
            seconds = _gate_seconds(a.step, rejected(a.concept, a.method, a.hparams, self.reject))
            shards = shard_count(self.shards, 1.0, self.reserve)
            # As orchestrator/ray/shards.py draws a gate: look by look, on up to `shards` GPUs, each look on
            # whichever GPU frees up first (a helper joins when it starts; none is waited for).
            self.queues[self.count], self.caps[self.count] = _looks(seconds), shards
            refs = []
        self.running[self.count] = (refs, a, request, phase, seconds)
        self._top_up(self.count)
        return self.count

    def _top_up(self, ticket) -> None:
        """A gate's finished looks make room for its next ones (at most `shards` in flight)."""
        refs, queue = self.running[ticket][0], self.queues.get(ticket)
        if queue is None:
            return
        refs[:] = ray.wait(refs, num_returns=len(refs), timeout=0)[1] if refs else []
        while queue and len(refs) < self.caps[ticket]:
            refs.append(hold.options(num_gpus=1).remote(queue.pop(0) / self.scale))

    def wait(self, tickets):
        while True:
            for t in tickets:
                self._top_up(t)
            pending = {t: ray.wait(self.running[t][0], num_returns=len(self.running[t][0]), timeout=0)[1]
                       for t in tickets}
            done = next((t for t in tickets if not pending[t] and not self.queues.get(t)), None)
            if done is not None:
                _, a, request, phase, seconds = self.running.pop(done)
                self.queues.pop(done, None)
                self.gpu_seconds += seconds
                return done, self._output(a, request, phase)
            # only the refs not finished yet: waiting on a finished one returns at once (a busy loop)
            ray.wait([r for refs in pending.values() for r in refs], num_returns=1, timeout=0.5)

    def cancel(self, tickets):
        # Not forced: a forced cancel kills the worker and Ray starts another (seconds here, hours at this
        # scale). The product's GPU phases run in a fresh process each (max_calls=1), so there a forced
        # cancel costs nothing beyond the phase's own start-up, which the cost model already holds.
        for t in tickets:   # a discarded phase's time until now is not counted: a small undercount
            self.queues.pop(t, None)
            for ref in self.running.pop(t)[0]:
                ray.cancel(ref, force=False)

    def erase(self, a, request, watch=None):
        return self.wait([self.submit(a, request, "erase")])[1]

    def validate(self, a, request, candidate, watch=None):
        return self.wait([self.submit(a, request, "validate", candidate)])[1]

    def _output(self, a, request, phase) -> PhaseOutput:
        if phase == "erase":
            out = Path(request.out_dir)
            out.mkdir(parents=True, exist_ok=True)
            payload = repr((a.concept, a.method, sorted(a.hparams.items()), [p.sha256 for p in request.parents]))
            (out / "delta.safetensors").write_text(payload)
            sha = hashlib.sha256(payload.encode()).hexdigest()
            return PhaseOutput("erase", DeltaRef(str(out / "delta.safetensors"), sha), "", None, 0.0, "")
        return PhaseOutput("validate", _report(a, rejected(a.concept, a.method, a.hparams, self.reject)),
                           "", None, 0.0, "")


def _report(a, fail: bool) -> GateReport:
    good = Estimate(0.99, 0.97, 1.0, 500)
    forgetting = Estimate(0.6, 0.55, 0.65, 500) if fail else Estimate(0.97, 0.95, 0.99, 500)
    images = gate_images(a.step)
    return GateReport(concept=a.concept, forgetting=forgetting, target_acc=Estimate(0.03, 0.01, 0.05, 500),
                      base_target_acc=0.9, evasion={}, retain=good, retain_by_distance={},
                      leakage=Estimate(0.0, 0.0, 0.01, 500), drift=Estimate(0.05, 0.03, 0.08, 500),
                      kl=0.0, kl_base_noise=0.0, cumulative={},
                      images_generated=round(images * (COST["early_stop_fraction_rejected"] if fail else 1)),
                      early_stopped=fail, seconds=0.0)


def chain_bound(decisions: list, workers: int = 1, gpus: int = GPUS) -> float:
    """A lower bound on any schedule's wall time (model seconds) with the product's semantics, from the serial
    run's decisions: each step's erase needs the candidate it builds on, and a retry needs the rejection it
    answers. Per step: its first erase; if that is rejected, its gate (on every GPU) and the longest of the
    later attempts' erases (all started at once, as parallel attempts do); if the step commits nothing, also
    the last gate (the next step builds on the committed model before it); the campaign's last gate at the end.
    Gates at full width, no overhead, unbounded GPUs for speculation: no scheduler can beat it."""
    steps: dict[int, list] = {}
    for step, method, hparams, verdict in decisions:
        steps.setdefault(step, []).append((method, dict(hparams), verdict))
    total = 0.0
    for step, attempts in sorted(steps.items()):
        first, rest = attempts[0], attempts[1:]
        total += erase_wall(first[0], workers)
        if rest:
            total += _gate_seconds(step, True) / gpus + max(erase_wall(m, workers) for m, _, _ in rest)
        if all(v != "commit" for _, _, v in attempts):
            total += _gate_seconds(step, True) / gpus
    last = max(steps)
    return total + _gate_seconds(last, steps[last][-1][2] != "commit") / gpus


def gpu_seconds(decisions: list) -> float:
    """The campaign's GPU-seconds on one GPU per erase (what the serial loop holds): every attempt's erase and gate."""
    return sum(erase_seconds(method) + _gate_seconds(step, verdict != "commit")
               for step, method, _, verdict in decisions)


def _gate_seconds(step: int, fail: bool) -> float:
    """A gate's GPU-seconds: the base model's images of its suite and the candidate's drawn ones."""
    images = gate_images(step)
    drawn = round(images * (COST["early_stop_fraction_rejected"] if fail else 1.0))
    return (images + drawn) * COST["seconds_per_image"]


def run_mode(name: str, args, root: Path) -> dict:
    concepts = ",".join(f"concept{i:03d}" for i in range(args.concepts))
    spec = load_spec(None, [f"name={name}", f"concepts=[{concepts}]", f"storage_path={root / name}",
                            "allow_thin=true", "ladder=[esd-x]", "tracking.mode=disabled"])
    settled, manifest = preflight(spec, run=False), Manifest.create(spec.storage_path, spec)
    executor = Synthetic(args.scale, args.reject, 1 if name == "serial" else 0, 0.0 if name == "sharded" else 1.0,
                         COST["finetune_workers"] if name == "workers" else 1)
    loop = CampaignLoop(settled, manifest, executor) if name in ("serial", "sharded") else \
        PipelinedLoop(settled, manifest, executor, (), speculative=True, parallel_attempts=3)
    t0 = time.monotonic()
    outcome = loop.run()
    wall = (time.monotonic() - t0) * args.scale
    h = manifest.history
    decisions = [(a.step, a.method, sorted(a.hparams.items()), a.decision.verdict) for a in
                 sorted(h.attempts, key=lambda a: (a.step, a.attempt)) if a.status == "finished"]
    return {"mode": name, "wall_s": wall, "gpu_seconds": executor.gpu_seconds,
            "utilisation": executor.gpu_seconds / (GPUS * wall), "committed": len(outcome.committed),
            "attempts": len(h.attempts), "discarded": sum(a.status == "discarded" for a in h.attempts),
            "decisions": decisions}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concepts", type=int, default=100)
    ap.add_argument("--scale", type=float, default=500.0,
                    help="model seconds per real second (higher: faster, more of the loop's own overhead)")
    ap.add_argument("--reject", type=float, default=0.2, help="share of gates that reject")
    ap.add_argument("--erase", choices=("toy", "published"), default="toy",
                    help="erase seconds from the toy world's erase/gate ratios or from published figures")
    ap.add_argument("--modes", default="serial,sharded,pipelined,workers")
    ap.add_argument("--out", type=Path, default=REPO / "bench-results" / "scheduler.json")
    args = ap.parse_args()
    COST["erase_seconds"] = PUBLISHED_ERASE if args.erase == "published" else {}
    node = Cluster(initialize_head=True, head_node_args={"num_cpus": 16, "num_gpus": GPUS,
                                                         "object_store_memory": 100 * 1024 * 1024})
    ray.init(address=node.address, logging_level="WARNING")
    # Start the workers first (up to num_cpus idle ones are kept): a fresh worker process costs seconds here.
    ray.get([hold.options(num_gpus=GPUS / 14).remote(1.0) for _ in range(14)])
    rows = []
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:  # cheap fsync
        for mode in args.modes.split(","):
            rows.append(run_mode(mode, args, Path(tmp)))
            print(f"  {mode}: {rows[-1]['wall_s'] / 3600:.1f} h", flush=True)
    ray.shutdown()
    node.shutdown()
    ref = rows[0]   # decisions are equal in every mode (checked below)
    ideal = gpu_seconds(ref["decisions"]) / GPUS   # the serial run's GPU-seconds, whichever modes ran
    bound = chain_bound(ref["decisions"])
    for r in rows:   # each mode's own bound: its erases' lengths
        r["chain_bound_s"] = chain_bound(ref["decisions"], COST["finetune_workers"] if r["mode"] == "workers" else 1)
    same = all(r["decisions"] == rows[0]["decisions"] for r in rows)
    print(f"\n{args.concepts} concepts, one node of {GPUS} GPUs, rejection rate {args.reject}, erase {args.erase}, "
          f"time scale 1/{args.scale:g} (model hours below; SD 1.5 on A100 figures)")
    print(f"{'mode':<40}{'wall h':>8}{'x ideal':>9}{'x bound':>9}{'GPU util':>10}{'attempts':>10}{'discarded':>10}"
          f"{'committed':>10}")
    names = {"serial": "serial (today)", "sharded": "sharded gates",
             "pipelined": "sharded + speculative + parallel 3",
             "workers": f"the same + fine-tunes on {COST['finetune_workers']} GPUs"}
    for r in rows:
        r["ratio_to_ideal"] = r["wall_s"] / ideal
        print(f"{names[r['mode']]:<40}{r['wall_s'] / 3600:>8.1f}{r['ratio_to_ideal']:>9.2f}"
              f"{r['wall_s'] / r['chain_bound_s']:>9.2f}{r['utilisation']:>10.2f}"
              f"{r['attempts']:>10}{r['discarded']:>10}{r['committed']:>10}")
    print(f"{'ideal (GPU-seconds / GPUs)':<40}{ideal / 3600:>8.1f}{1.0:>9.2f}{'':>9}{1.0:>10.2f}")
    for w in sorted({r["chain_bound_s"] for r in rows}, reverse=True):
        label = "erase-chain bound" + ("" if w == bound else f", fine-tunes on {COST['finetune_workers']}")
        print(f"{label:<40}{w / 3600:>8.1f}{w / ideal:>9.2f}{1.0:>9.2f}")
    images = {k: gate_images(k) for k in (1, 50, 100)}
    print(f"images per gate (candidate, before early stop) at steps 1, 50, 100: {images[1]}, {images[50]}, "
          f"{images[100]} ({images[100] / images[1]:.2f}x); decisions equal in every mode: {same}")
    best = min(rows, key=lambda r: r["wall_s"])
    h100 = {r["mode"]: r["wall_s"] / 3600 / COST["h100_speedup"] for r in rows}
    print(f"8x H100 projection (A100 figures / {COST['h100_speedup']}): " +
          ", ".join(f"{m} {v:.1f} h" for m, v in h100.items()))
    for r in rows:
        del r["decisions"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "ratio_to_ideal": best["ratio_to_ideal"], "best_mode": best["mode"],
        "chain_bound_s": bound, "chain_bound_over_ideal": bound / ideal, "ratio_to_chain_bound": best["wall_s"] / best["chain_bound_s"],
        "images_per_gate_step100_over_step1": images[100] / images[1], "images_per_gate": images,
        "ideal_s": ideal, "modes": rows, "decisions_equal": same, "projection_hours_8xH100": h100,
        "concepts": args.concepts, "gpus": GPUS, "erase_model": args.erase, "reject": args.reject, "scale": args.scale, "cost_model": COST},
        indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
