"""Scheduler: 100 concepts on a fake 8-GPU node, serial vs sharded vs sharded + speculative + parallel attempts
(without the erase lane; with baselines drawn ahead; and with fine-tunes as distributed steps on 4 GPUs).

    python benches/scheduler.py [--concepts 100] [--scales serial=500,sharded=200,pipelined=100,...]
                                [--reject 0.2] [--modes serial,sharded,pipelined,nolane,prefetch,workers]
                                [--depth 2] [--prefetch 6]

The real loops (orchestrator/loop.py CampaignLoop, orchestrator/pipeline.py PipelinedLoop), journal,
gate and Ray scheduling on a ray.cluster_utils.Cluster whose node says it has 8 GPUs: shard_count over the
cluster's GPUs; a gate drawn by that many members as orchestrator/ray/shards.py draws it (each holds a GPU
from its start, takes the next look nobody has; a helper goes once no look is left, the validation task
holds its GPU until the last look is back); one GPU per erase, in the erase lane (orchestrator/ray/lane.py)
when the campaign speculates; a baseline drawn ahead (resources.prefetch_baselines) holds one GPU. A cancelled
phase ends at once, as the product's forced cancel ends it. Not modelled: a helper's pipeline load (seconds on
SD 1.5 per helper per gate), and the views, attack and grid the validation task draws after the gate. Only the
phases are synthetic: each sleeps for its cost-model seconds divided by its mode's scale, and a gate's verdict
is drawn per (concept, method, hparams) at --reject. Cost model (model seconds, SD 1.x; see COST below and the
docs/scaling.md):

- seconds per image: 1.6 (SD 1.5, A100, 512 px, 50 steps, fp16, batch 1: published figure).
- images per gate at step k: 500 + min(2 (k - 1), 80): the target suite (a 500-image gate) plus the
  earlier concepts' cumulative rows under a fixed cumulative budget of 80 images. The base model's
  images of the same suite are drawn too, once per suite (the baseline cache is keyed by suite, which
  changes per step; a retry's gate, or a gate after a baseline drawn ahead, finds them cached).
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
import asyncio
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

from erasecore.contracts import DeltaRef, Estimate, GateReport  # noqa: E402
from orchestrator.loop import CampaignLoop, PhaseOutput  # noqa: E402
from orchestrator.manifest import Manifest  # noqa: E402
from orchestrator.pipeline import PipelinedLoop  # noqa: E402
from orchestrator.preflight import preflight  # noqa: E402
from orchestrator.ray.lane import EraseLane  # noqa: E402
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


MODES = ("serial", "sharded", "pipelined", "nolane", "prefetch", "workers")
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


def _sleep(seconds: float, stop: Path) -> bool:
    """Sleep `seconds` (real) unless `stop` appears first, as the product's forced cancel ends a phase at once
    (a forced Ray cancel here would restart the worker: seconds of real time, hours at these scales).
    True if it slept to the end."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if stop.exists():
            return False
        time.sleep(min(left, 0.02))
    return True


@ray.remote(num_cpus=0)
def hold(seconds: float, stop: str) -> tuple[list, tuple[float, float]]:
    """An erase: hold the task's GPU for `seconds` or until cancelled. (drawing spans, held span) on the monotonic
    clock (one clock for every process of the machine; a step of the wall clock cannot cut a hold short)."""
    start = time.monotonic()
    _sleep(seconds, Path(stop))
    return [(start, time.monotonic())], (start, time.monotonic())


@ray.remote(num_cpus=0)
class Looks:
    """The looks of every open gate (model seconds each): members take them one at a time, and a gate closes
    once every look is drawn (or it is cancelled). One actor for the whole run: a process per gate costs seconds."""

    def __init__(self):
        self.queues, self.left, self.closed = {}, {}, {}

    async def open(self, gate, looks: list) -> None:
        self.queues[gate], self.left[gate], self.closed[gate] = list(looks), len(looks), asyncio.Event()

    async def take(self, gate):
        queue = self.queues.get(gate)
        return queue.pop(0) if queue else None

    async def drawn(self, gate) -> None:
        self.left[gate] -= 1
        if self.left[gate] == 0:
            self.closed[gate].set()

    async def cancel(self, gate) -> None:
        self.queues[gate] = []
        self.closed[gate].set()

    async def until_closed(self, gate) -> None:
        await self.closed[gate].wait()


@ray.remote(num_cpus=0)
def member(looks, gate, scale: float, task: bool, stop: str) -> tuple[list, tuple[float, float]]:
    """One shard of a gate, as orchestrator/ray/shards.py runs one: it holds its GPU from when it starts,
    drawing whichever look nobody has taken yet. A helper goes once no look is left for it; the validation
    task itself (`task`) holds its GPU until the gate's last look is back. A cancelled gate ends at once (the
    product's forced cancel of the validation task ends its helpers with it)."""
    start, spans = time.monotonic(), []
    while (seconds := ray.get(looks.take.remote(gate))) is not None:
        t = time.monotonic()
        whole = _sleep(seconds / scale, Path(stop))
        spans.append((t, time.monotonic()))
        if not whole:
            break
        looks.drawn.remote(gate)
    if task and not Path(stop).exists():
        ray.get(looks.until_closed.remote(gate))
    return spans, (start, time.monotonic())


class Synthetic:
    """Phases as Ray tasks that hold GPUs for their cost-model time; both executor interfaces."""

    def __init__(self, scale: float, reject: float, shards: int, reserve: float, stops: Path, workers: int = 1,
                 lane: EraseLane | None = None):
        self.scale, self.reject, self.shards, self.reserve, self.workers = scale, reject, shards, reserve, workers
        self.stops = stops               # a file per cancelled ticket: its tasks end at once
        stops.mkdir(parents=True, exist_ok=True)
        self.lane = lane                 # as the driver keeps one for a speculative campaign's erases
        self.looks = Looks.remote()
        ray.get(self.looks.open.remote(0, []))   # its process started now, not at the first gate
        self.running: dict = {}          # ticket -> (refs of its one-GPU tasks, attempt, request, phase)
        self.cached: set = set()         # suites whose base images are in the baseline cache
        self.count = 0
        self.spans: list = []            # (step, attempt, phase, ref) of every one-GPU task started: the timeline

    def submit(self, a, request, phase, candidate=None, watch=None):
        self.count += 1
        if phase == "baseline":   # the base model's images of a suite, drawn ahead on one GPU
            seconds = gate_images(a.step) * COST["seconds_per_image"]
            refs = [hold.options(num_gpus=1).remote(seconds / self.scale, self._stop(self.count))]
        elif phase == "erase":
            shards = 1 if a.method in CLOSED_FORM else self.workers
            seconds = erase_wall(a.method, shards) * shards   # GPU-seconds, split evenly over its workers
            lane = self.lane.options() if self.lane is not None and shards == 1 else {}
            refs = [hold.options(num_gpus=1, **lane).remote(seconds / shards / self.scale, self._stop(self.count))
                    for _ in range(shards)]
            if lane:
                self.lane.occupy(self.count, lane)
        else:
            fail = rejected(a.concept, a.method, a.hparams, self.reject)
            seconds = _gate_seconds(a.step, fail, base=_suite(a, request) not in self.cached)
            shards = shard_count(self.shards, 1.0, self.reserve)
            ray.get(self.looks.open.remote(self.count, _looks(seconds)))
            stop = self._stop(self.count)
            refs = [member.options(num_gpus=1).remote(self.looks, self.count, self.scale, i == 0, stop)
                    for i in range(shards)]
        self.spans += [(a.step, a.attempt, phase, r) for r in refs]
        self.running[self.count] = (refs, a, request, phase)
        return self.count

    def wait(self, tickets):
        refs = {r: t for t in tickets for r in self.running[t][0]}
        while True:
            done = next((t for t in tickets if not ray.wait(self.running[t][0], num_returns=len(self.running[t][0]),
                                                            timeout=0)[1]), None)
            if done is not None:
                _, a, request, phase = self.running.pop(done)
                self._release(done)
                if phase != "erase":   # a gate draws its suite's base images first; a baseline phase only them
                    self.cached.add(_suite(a, request))
                return done, self._output(a, request, phase)
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
            for r in ready:   # finished: waiting on it again would return at once (a busy loop)
                del refs[r]

    def cancel(self, tickets):
        # The product cancels by force (a fresh process per phase: max_calls=1). Here a forced cancel would
        # restart a worker (seconds of real time, hours at these scales), and a plain one does not stop a
        # running task: its tasks see their stop file instead and end at once (a queued one as it starts).
        for t in tickets:
            Path(self._stop(t)).touch()
            self._release(t)
            if self.running.pop(t)[3] == "validate":
                self.looks.cancel.remote(t)

    def _stop(self, ticket) -> str:
        return str(self.stops / f"{ticket}")

    def gpu_seconds(self) -> float:
        """Model seconds x GPUs drawing (an erase or a look) of every task that ran, cancelled ones until then."""
        return sum(end - start for _, _, _, ref in self.spans for start, end in _spans(ref)[0]) * self.scale

    def _release(self, ticket) -> None:
        if self.lane is not None:
            self.lane.release(ticket)

    def erase(self, a, request, watch=None):
        return self.wait([self.submit(a, request, "erase")])[1]

    def validate(self, a, request, candidate, watch=None):
        return self.wait([self.submit(a, request, "validate", candidate)])[1]

    def _output(self, a, request, phase) -> PhaseOutput:
        if phase == "baseline":
            return PhaseOutput("baseline", gate_images(a.step), "", None, 0.0, "")
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
    Gates at full width and of the candidate's images only (the base model's can be drawn before the candidate
    exists), no overhead, unbounded GPUs for speculation: no scheduler can beat it."""
    steps: dict[int, list] = {}
    for step, method, hparams, verdict in decisions:
        steps.setdefault(step, []).append((method, dict(hparams), verdict))
    total = 0.0
    for step, attempts in sorted(steps.items()):
        first, rest = attempts[0], attempts[1:]
        total += erase_wall(first[0], workers)
        if rest:
            total += _gate_seconds(step, True, base=False) / gpus + max(erase_wall(m, workers) for m, _, _ in rest)
        if all(v != "commit" for _, _, v in attempts):
            total += _gate_seconds(step, True, base=False) / gpus
    last = max(steps)
    return total + _gate_seconds(last, steps[last][-1][2] != "commit", base=False) / gpus


def gpu_seconds(decisions: list) -> float:
    """The campaign's GPU-seconds on one GPU per erase (what the serial loop holds): every attempt's erase and
    gate, the base model's images once per step (a retry's gate finds them in the baseline cache)."""
    first = {step: i for i, (step, *_) in reversed(list(enumerate(decisions)))}
    return sum(erase_seconds(method) + _gate_seconds(step, verdict != "commit", base=first[step] == i)
               for i, (step, method, _, verdict) in enumerate(decisions))


def _gate_seconds(step: int, fail: bool, base: bool) -> float:
    """A gate's GPU-seconds: the candidate's drawn images, and the base model's of its suite unless cached."""
    images = gate_images(step)
    drawn = round(images * (COST["early_stop_fraction_rejected"] if fail else 1.0))
    return ((images if base else 0) + drawn) * COST["seconds_per_image"]


def _suite(a, request) -> tuple:
    """What a gate's base images depend on (the baseline cache's key, as orchestrator/pipeline.py keys it)."""
    return a.step, tuple(request.erased_before)


def run_mode(name: str, args, root: Path, scale: float) -> dict:
    concepts = ",".join(f"concept{i:03d}" for i in range(args.concepts))
    spec = load_spec(None, [f"name={name}", f"concepts=[{concepts}]", f"storage_path={root / name}",
                            "allow_thin=true", "ladder=[esd-x]", "tracking.mode=disabled"])
    settled, manifest = preflight(spec, run=False), Manifest.create(spec.storage_path, spec)
    speculative = name not in ("serial", "sharded")
    lane = EraseLane.open(1, 0) if speculative and name != "nolane" else None
    executor = Synthetic(scale, args.reject, 1 if name == "serial" else 0, 1.0 if speculative else 0.0,
                         root / f"stops-{name}",
                         COST["finetune_workers"] if name == "workers" else 1, lane)
    loop = CampaignLoop(settled, manifest, executor) if name in ("serial", "sharded") else \
        PipelinedLoop(settled, manifest, executor, (), speculative=True, parallel_attempts=3, depth=args.depth,
                      prefetch=args.prefetch if name in ("prefetch", "workers") else 0)
    t0 = time.monotonic()
    outcome = loop.run()
    wall = (time.monotonic() - t0) * scale
    if lane is not None:
        lane.close()
    if args.timeline:
        _write_timeline(args.timeline.with_suffix(f".{name}.json"), executor.spans, t0, scale)
    h = manifest.history
    decisions = [(a.step, a.method, sorted(a.hparams.items()), a.decision.verdict) for a in
                 sorted(h.attempts, key=lambda a: (a.step, a.attempt)) if a.status == "finished"]
    used = executor.gpu_seconds()
    return {"mode": name, "scale": scale, "wall_s": wall, "gpu_seconds": used, "utilisation": used / (GPUS * wall),
            "committed": len(outcome.committed),
            "attempts": len(h.attempts), "discarded": sum(a.status == "discarded" for a in h.attempts),
            "decisions": decisions}


def _spans(ref) -> tuple[list, tuple[float, float] | None]:
    """A task's (drawing spans, held span) on the monotonic clock; none for one cancelled before it started."""
    try:
        return ray.get(ref, timeout=5)
    except Exception:  # noqa: BLE001 - cancelled while queued: it never ran
        return [], None


def _write_timeline(path: Path, spans: list, clock0: float, scale: float) -> None:
    """Every one-GPU task that ran, as model seconds since the loop started (cancelled ones until then): a row
    per look or erase drawn ("phase") and a row per GPU held ("held": a gate's member holds it from its start
    to the gate's end)."""
    rows = []
    for step, attempt, phase, ref in spans:
        drawn, held = _spans(ref)
        for kind, (start, end) in [(phase, d) for d in drawn] + ([("held", held)] if held else []):
            rows.append({"step": step, "attempt": attempt, "phase": kind,
                         "start": (start - clock0) * scale, "end": (end - clock0) * scale})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows))


def _refuse(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concepts", type=int, default=100)
    ap.add_argument("--scales", default="serial=500,sharded=200,pipelined=100,nolane=100,prefetch=100,workers=100",
                    help="model seconds per real second, per mode: higher runs faster but counts the loop's own "
                         "real-time overhead that many times over (about 20 s for 100 concepts here); the longer "
                         "modes hide it in more model time, so they run at a higher scale")
    ap.add_argument("--reject", type=float, default=0.2, help="share of gates that reject")
    ap.add_argument("--erase", choices=("toy", "published"), default="toy",
                    help="erase seconds from the toy world's erase/gate ratios or from published figures")
    ap.add_argument("--modes", default="serial,sharded,pipelined,nolane,prefetch,workers",
                    help="nolane: pipelined without the erase lane (orchestrator/ray/lane.py)")
    ap.add_argument("--depth", type=int, default=2, help="resources.speculation_depth of the pipelined modes")
    ap.add_argument("--prefetch", type=int, default=6, help="resources.prefetch_baselines of modes prefetch, workers")
    ap.add_argument("--timeline", type=Path, help="write each mode's GPU tasks (model seconds) to PATH.<mode>.json")
    ap.add_argument("--out", type=Path, default=REPO / "bench-results" / "scheduler.json")
    args = ap.parse_args()
    try:
        scales = {m: float(v) for m, v in (kv.split("=") for kv in args.scales.split(","))}
    except ValueError:
        _refuse(f"--scales wants mode=number,... (e.g. serial=500,pipelined=100), got {args.scales!r}")
    if unknown := [m for m in args.modes.split(",") if m not in MODES]:
        _refuse(f"--modes: unknown {', '.join(unknown)} (known: {', '.join(MODES)})")
    if missing := [m for m in args.modes.split(",") if m not in scales]:
        _refuse(f"--scales has no scale for {', '.join(missing)}")
    COST["erase_seconds"] = PUBLISHED_ERASE if args.erase == "published" else {}
    node = Cluster(initialize_head=True, head_node_args={"num_cpus": 16, "num_gpus": GPUS,
                                                         "object_store_memory": 100 * 1024 * 1024})
    ray.init(address=node.address, logging_level="WARNING")
    # Start the workers first (up to num_cpus idle ones are kept): a fresh worker process costs seconds here.
    ray.get([hold.options(num_gpus=GPUS / 14).remote(1.0, "/nonexistent") for _ in range(14)])
    rows = []
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:  # cheap fsync
        for mode in args.modes.split(","):
            rows.append(run_mode(mode, args, Path(tmp), scales[mode]))
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
          f"speculation depth {args.depth}, baselines {args.prefetch} steps ahead (model hours below; SD 1.5 on A100 "
          f"figures)")
    print(f"{'mode':<40}{'wall h':>8}{'x ideal':>9}{'x bound':>9}{'GPU util':>10}{'attempts':>10}{'discarded':>10}"
          f"{'committed':>10}{'scale':>8}")
    names = {"serial": "serial (today)", "sharded": "sharded gates",
             "pipelined": "sharded + speculative + parallel 3",
             "nolane": "the same without the erase lane",
             "prefetch": "+ baselines drawn ahead",
             "workers": f"the same + fine-tunes on {COST['finetune_workers']} GPUs"}
    for r in rows:
        r["ratio_to_ideal"] = r["wall_s"] / ideal
        print(f"{names[r['mode']]:<40}{r['wall_s'] / 3600:>8.1f}{r['ratio_to_ideal']:>9.2f}"
              f"{r['wall_s'] / r['chain_bound_s']:>9.2f}{r['utilisation']:>10.2f}"
              f"{r['attempts']:>10}{r['discarded']:>10}{r['committed']:>10}{'1/' + format(r['scale'], 'g'):>8}")
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
        "chain_bound_s": bound, "chain_bound_over_ideal": bound / ideal,
        "ratio_to_chain_bound": best["wall_s"] / best["chain_bound_s"],
        "images_per_gate_step100_over_step1": images[100] / images[1], "images_per_gate": images,
        "ideal_s": ideal, "modes": rows, "decisions_equal": same, "projection_hours_8xH100": h100,
        "concepts": args.concepts, "gpus": GPUS, "erase_model": args.erase, "reject": args.reject, "scales": scales,
        "depth": args.depth,
        "prefetch": args.prefetch, "cost_model": COST},
        indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
