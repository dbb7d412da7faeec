"""Per-GPU memory of an erasure step, and the cheapest change of settings that makes it fit.

Pure: numbers in (an erasecore.inventory.ModelInventory, the method's hyperparameters, the
campaign's resources), dataclasses out; no torch, no Ray. `erase plan CAMPAIGN` feeds it.

The estimate, per GPU, of one step on N workers (one GPU each). b = ceil(batch / N) samples per
worker and micro-step (`batch` is the method's; gradient accumulation does not change memory);
w = bytes per weight as the step holds it: the step loads the pipeline in fp32 (4), and only
DeepSpeed under fp16/bf16 converts the trained denoiser to the half dtype (2, with fp32 master
weights of the trained parameters in its optimizer); Accelerate's DDP mixed precision keeps fp32
weights and gradients and only computes in half. a = bytes per activation element: 4 for
mixed_precision "no", 2 for "fp16"/"bf16". Frozen components (text encoders, VAE) are held in
resources.frozen_precision: 2 bytes for "auto" (bf16 on a GPU, which is what a plan is for),
"bf16" and "fp16", 4 for "fp32"; the frozen copy of the denoiser (made before DeepSpeed converts)
stays fp32. D = the denoiser's parameters, P = the parameters the method trains (LoRA: rank x
sum of in+out features).

  weights      every frozen component on the GPU (text encoders, VAE): params x f (2 or 4)
               the denoiser (with LoRA factors, D + P): x w; ZeRO-3: / N, plus 2 x its largest
               checkpointed block x w (the block being gathered and the next, prefetched; at most
               the whole denoiser);
               ZeRO-3 with parameter offload: only those 2 gathered blocks
               a frozen copy of the denoiser (ESD-x, ESD-u and CA keep one to make targets): D x 4,
               on every GPU, never sharded
  gradients    P x w; ZeRO-2/3: / N; optimizer offload: none on the GPU (reduced and moved to CPU)
  optimizer    AdamW's two moments, P x 8, plus fp32 master weights P x 4 under DeepSpeed fp16/bf16;
               ZeRO-1/2/3: / N; optimizer offload: none on the GPU (in CPU memory)
  buffers      DDP with N > 1: its gradient buckets, a second copy of the gradients, P x w;
               DeepSpeed: its gradient reduce bucket, min(P, 5e8) x w
  activations  b x f x (A + S) x a: f forwards per step keep a graph for the backward (ESD, CA and
               LoRA: 2, the erase term and the preserve term; FMN: 1; UCE: 0, it is closed-form),
               A the elements autograd saves per sample when the method's parameters train, as
               the inventory measured them (A_checkpointed with gradient checkpointing), S the
               cross-attention probabilities FMN stores (0 for the others)
  overhead     1.0 GiB: CUDA context and cuBLAS/cuDNN workspaces; + 0.5 GiB NCCL buffers if N > 1

A step fits when the total is at most 90% of resources.gpu_memory_gb (read as GiB): the tenth
left is for allocator fragmentation and what is not modelled (the no-grad forwards that make the
targets, generating the training latents, attention scores: memory-efficient attention assumed).
CPU memory per worker under offload is reported beside it (optimizer states, fp32 gradients and,
with parameter offload, the denoiser's shard), not fitted.

The plan: the configured settings if every step fits; else the cheapest combination of changes
that fits every step, by the rough relative slowdowns in COSTS (ranks, not measurements):
gradient checkpointing, a more partitioned DeepSpeed config (never a less partitioned one than
configured), bf16, and halving the method's batch while doubling grad_accum (samples per
optimizer step unchanged; the batch stays a multiple of the workers, as the training loop requires). Resources are shared by all the campaign's steps; batch and precision
are per method. If nothing fits, the explanation is the most reduced plan's total and its
largest term.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

from erasecore import catalog
from erasecore.errors import ConfigError
from erasecore.inventory import ModelInventory

GIB = 1024 ** 3
USABLE = 0.9
CONTEXT_GIB, NCCL_GIB = 1.0, 0.5
REDUCE_BUCKET = 5e8                      # DeepSpeed's default reduce_bucket_size (elements)
PRECISION_BYTES = {"no": 4, "fp16": 2, "bf16": 2}
LOADED_BYTES = 4   # jobs/step.py loads the denoiser in fp32
FROZEN_BYTES = {"auto": 2, "bf16": 2, "fp16": 2, "fp32": 4}   # jobs/models/precision.py; auto on a GPU is bf16
# What each method holds, from the catalog: forwards keeping a graph, a frozen copy, whether it trains.
GRAPH_FORWARDS = {m.name: m.graph_forwards for m in catalog.METHODS}
KEEPS_FROZEN_COPY = tuple(m.name for m in catalog.METHODS if m.frozen_copy)
KEEPS_ATTENTION = tuple(m.name for m in catalog.METHODS if m.attention_probs)
TRAINS = tuple(m.name for m in catalog.METHODS if not m.closed_form)
DEEPSPEED_DIR = "configs/deepspeed"
# Rough relative slowdown of each change, used only to rank plans: checkpointing recomputes the
# forward (~1/3 of a step); ZeRO stages add communication; offload moves states over PCIe; bf16
# is fast on GPUs but changes the numerics (and the campaign's spec hash); each halving of the
# batch lowers GPU utilisation.
COSTS = {"gradient_checkpointing": 0.33, "ddp": 0.0, "zero1": 0.02, "zero2": 0.05, "zero3": 0.15,
         "zero2-offload": 0.6, "zero3-offload": 1.0, "bf16": 0.2, "halve_batch": 0.1}


@dataclass(frozen=True)
class Strategy:
    """How a step's training state is spread over its workers."""

    name: str                            # ddp, zero1, zero2, zero3, zero2-offload, zero3-offload, or a file stem
    stage: int = 0                       # ZeRO stage; 0 for DDP
    offload_optimizer: bool = False
    offload_params: bool = False
    config: str = ""                     # the DeepSpeed config file ("" for DDP)

    def overrides(self) -> list[str]:
        if self.stage == 0 and not self.config:
            return ["resources.strategy=ddp"]
        return ["resources.strategy=deepspeed", f"resources.deepspeed_config={self.config}"]

    def covers(self, other: Strategy) -> bool:
        """Partitions and offloads at least what `other` does."""
        return (self.stage >= other.stage and self.offload_optimizer >= other.offload_optimizer
                and self.offload_params >= other.offload_params)

    @property
    def cost(self) -> float:
        return COSTS.get(_shipped_name(self), 0.0)


DDP = Strategy("ddp")
SHIPPED = (Strategy("zero1", 1, config=f"{DEEPSPEED_DIR}/zero1.json"),
           Strategy("zero2", 2, config=f"{DEEPSPEED_DIR}/zero2.json"),
           Strategy("zero3", 3, config=f"{DEEPSPEED_DIR}/zero3.json"),
           Strategy("zero2-offload", 2, True, config=f"{DEEPSPEED_DIR}/zero2-offload.json"),
           Strategy("zero3-offload", 3, True, True, config=f"{DEEPSPEED_DIR}/zero3-offload.json"))


def _shipped_name(s: Strategy) -> str:
    for known in (DDP, *SHIPPED):
        if (known.stage, known.offload_optimizer, known.offload_params) == (s.stage, s.offload_optimizer,
                                                                              s.offload_params):
            return known.name
    return "zero3-offload" if s.offload_params else "zero2-offload" if s.offload_optimizer else f"zero{s.stage}"


def strategy_of(strategy: str, deepspeed_config: str, config: dict) -> Strategy:
    """The configured strategy; for DeepSpeed, ZeRO stage and offload from its JSON (read by preflight)."""
    if strategy != "deepspeed":
        return DDP
    path = Path(deepspeed_config)
    zero = config.get("zero_optimization", {})
    if not isinstance(zero, dict):
        raise ConfigError(f"resources.deepspeed_config: {path}: zero_optimization must be a mapping")

    def on_cpu(key: str) -> bool:
        return isinstance(zero.get(key), dict) and zero[key].get("device") in ("cpu", "nvme")

    return Strategy(path.stem, int(zero.get("stage", 0)), on_cpu("offload_optimizer"), on_cpu("offload_param"),
                    str(deepspeed_config))


@dataclass(frozen=True)
class StepSettings:
    """What decides one step's memory: the method's hyperparameters and the campaign's resources."""

    method: str
    batch: int = 1                       # the method's batch, over all workers (micro-step)
    grad_accum: int = 1
    precision: str = "no"                # mixed_precision: "no" | "fp16" | "bf16"
    rank: int = 0                        # LoRA rank
    num_workers: int = 1
    strategy: Strategy = DDP
    gradient_checkpointing: bool = False
    tunable_precision: bool = True       # the method has a mixed_precision hyperparameter
    frozen_precision: str = "fp32"       # resources.frozen_precision: text encoders and VAE


def step_settings(method: str, hp: dict, num_workers: int = 1, strategy: Strategy | None = None,
                  gradient_checkpointing: bool = False, frozen_precision: str = "fp32") -> StepSettings:
    """A method's step as planned, from its merged hyperparameters (DEFAULTS + the campaign's)."""
    return StepSettings(method=method, batch=int(hp.get("batch", 1)), grad_accum=int(hp.get("grad_accum", 1)),
                        precision=str(hp.get("mixed_precision", "no")), rank=int(hp.get("rank", 0)),
                        num_workers=num_workers, strategy=strategy or DDP,
                        gradient_checkpointing=gradient_checkpointing, tunable_precision="mixed_precision" in hp,
                        frozen_precision=frozen_precision)


@dataclass(frozen=True)
class Estimate:
    """Per-GPU bytes of one step, term by term."""

    settings: StepSettings
    terms: dict[str, float]              # name -> bytes per GPU, in table order
    host: float                          # bytes per worker in CPU memory (offloaded states)
    total: float
    budget: float                        # usable bytes per GPU
    trainable: int
    cost: float = 0.0                    # relative slowdown of its changes

    @property
    def fits(self) -> bool:
        return self.total <= self.budget

    def largest_term(self) -> tuple[str, float]:
        return max(self.terms.items(), key=lambda kv: kv[1])


def estimate(inv: ModelInventory, s: StepSettings, gpu_memory_gb: float) -> Estimate:
    """Per-GPU memory of one step (the formula in the module docstring)."""
    n = max(1, s.num_workers)
    trains = s.method in TRAINS
    st = s.strategy if trains else DDP
    a = PRECISION_BYTES[s.precision]
    w = a if trains and st.config else LOADED_BYTES   # only DeepSpeed holds the denoiser in half
    p = trainable_params(inv, s)
    d = inv.components[inv.denoiser]
    own = d + (p if s.method == "lora" else 0)
    gathered = min(2 * (inv.largest_block or own), own) * w
    terms: dict[str, float] = {}
    if trains and st.stage == 3:
        terms[f"weights: {inv.denoiser}"] = gathered + (0 if st.offload_params else own * w / n)
    else:
        terms[f"weights: {inv.denoiser}"] = own * w
    if s.method in KEEPS_FROZEN_COPY:
        terms[f"weights: frozen {inv.denoiser} copy"] = d * LOADED_BYTES
    for name, count in inv.components.items():
        if name != inv.denoiser:
            terms[f"weights: {name}"] = count * FROZEN_BYTES[s.frozen_precision]
    grads = p * w
    optim = p * (8 + (4 if w == 2 else 0))
    host = 0.0
    if trains:
        if st.offload_optimizer:
            host += optim / n + p * 4 / n
            grads, optim = 0.0, 0.0
        else:
            optim /= n if st.stage >= 1 else 1
            grads /= n if st.stage >= 2 else 1
        if st.offload_params:
            host += own * w / n
    terms["gradients"] = grads
    terms["optimizer"] = optim
    if not trains:
        buffers = 0.0
    elif st.stage == 0 and not st.config:
        buffers = p * w if n > 1 else 0.0
    else:
        buffers = min(p, REDUCE_BUCKET) * w
    terms["buffers"] = buffers
    per_worker = math.ceil(s.batch / n) if trains else 0
    kept = (inv.activations_checkpointed if s.gradient_checkpointing else inv.activations).get(s.method, 0)
    stored = inv.attention_probs if s.method in KEEPS_ATTENTION else 0
    terms["activations"] = per_worker * GRAPH_FORWARDS.get(s.method, 1) * (kept + stored) * a
    terms["overhead"] = (CONTEXT_GIB + (NCCL_GIB if n > 1 and trains else 0.0)) * GIB
    return Estimate(s, terms, host, sum(terms.values()), gpu_memory_gb * USABLE * GIB, p)


def trainable_params(inv: ModelInventory, s: StepSettings) -> int:
    if s.method == "lora":
        return s.rank * inv.lora_features
    return inv.trainable.get(s.method, 0)


# ---- planning ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MethodPlan:
    """One method's configured estimate, the single-change alternatives, and what the plan chose."""

    method: str
    configured: Estimate
    chosen: Estimate | None              # None: nothing fits
    alternatives: dict[str, Estimate]    # label -> the configured settings with one change
    overrides: list[str]                 # hparams.<method>.* to add
    reason: str = ""                     # why nothing fits


@dataclass(frozen=True)
class CampaignPlan:
    model: str
    gpu_memory_gb: float
    inventory: ModelInventory
    steps: list[MethodPlan]
    overrides: list[str]                 # everything to add to the command line
    fits: bool
    notes: list[str] = field(default_factory=list)

    @property
    def unchanged(self) -> bool:
        return self.fits and not self.overrides

    def to_dict(self) -> dict:
        def est(e: Estimate | None):
            if e is None:
                return None
            d = dataclasses.asdict(e)
            d["fits"] = e.fits
            d["terms_gib"] = {k: round(v / GIB, 4) for k, v in e.terms.items()}
            d["total_gib"] = round(e.total / GIB, 4)
            return d

        return {"model": self.model, "gpu_memory_gb": self.gpu_memory_gb, "usable_gib": self.gpu_memory_gb * USABLE,
                "fits": self.fits, "overrides": self.overrides, "notes": self.notes,
                "inventory": dataclasses.asdict(self.inventory),
                "steps": [{"method": m.method, "configured": est(m.configured), "chosen": est(m.chosen),
                           "alternatives": {k: est(v) for k, v in m.alternatives.items()},
                           "overrides": m.overrides, "reason": m.reason} for m in self.steps]}


def _hparam_variants(s: StepSettings):
    """(settings, cost, overrides) for every precision x batch-halving of one method's settings."""
    precisions = [s.precision] + (["bf16"] if s.precision == "no" and s.tunable_precision and s.method in TRAINS
                                  else [])
    for precision, k in itertools.product(precisions, _halvings(s)):
        changed = dataclasses.replace(s, precision=precision, batch=s.batch // 2 ** k, grad_accum=s.grad_accum * 2 ** k)
        cost = (COSTS["bf16"] if precision != s.precision else 0.0) + COSTS["halve_batch"] * k
        over = ([f"hparams.{s.method}.mixed_precision={precision}"] if precision != s.precision else []) + \
               ([f"hparams.{s.method}.batch={changed.batch}", f"hparams.{s.method}.grad_accum={changed.grad_accum}"]
                if k else [])
        yield changed, cost, over


def _halvings(s: StepSettings) -> list[int]:
    """k for every batch / 2^k that is whole and still splits evenly over the workers (what finetune requires)."""
    out = [0]
    while s.method in TRAINS and s.batch % 2 ** (out[-1] + 1) == 0 \
            and (s.batch // 2 ** (out[-1] + 1)) % max(1, s.num_workers) == 0:
        out.append(out[-1] + 1)
    return out


def _resource_variants(configured: StepSettings):
    """(checkpointing, strategy, cost) for every resource setting at least as frugal as configured."""
    strategies = [st for st in (DDP, *SHIPPED) if st.covers(configured.strategy)]
    if configured.strategy not in strategies:
        strategies.insert(0, configured.strategy)
    for ckpt in sorted({configured.gradient_checkpointing, True}):
        for st in strategies:
            same = st == configured.strategy
            cost = (COSTS["gradient_checkpointing"] if ckpt and not configured.gradient_checkpointing else 0.0) \
                + (0.0 if same else max(0.0, st.cost - configured.strategy.cost))
            yield ckpt, st, cost


def plan(inv: ModelInventory, settings: list[StepSettings], gpu_memory_gb: float) -> CampaignPlan:
    """The configured settings if every step fits, else the cheapest combination of changes that does."""
    if not settings:
        raise ValueError("plan needs at least one step")
    base = settings[0]
    configured = {s.method: estimate(inv, s, gpu_memory_gb) for s in settings}
    best = None   # (cost, worst fill, ckpt, strategy, {method: (estimate, overrides)})
    for ckpt, st, rcost in _resource_variants(base):
        chosen, total = {}, (rcost if any(s.method in TRAINS for s in settings) else 0.0)
        for s in settings:
            shared = dataclasses.replace(s, gradient_checkpointing=ckpt, strategy=st)
            fitting = [(c, estimate(inv, v, gpu_memory_gb), o) for v, c, o in _hparam_variants(shared)]
            fitting = [f for f in fitting if f[1].fits]
            if not fitting:
                break
            c, e, o = min(fitting, key=lambda f: (f[0], f[1].total))
            chosen[s.method] = (dataclasses.replace(e, cost=rcost + c), o)
            total += c
        else:
            fill = max(e.total / e.budget for e, _ in chosen.values())
            key = (round(total, 6), fill)
            if best is None or key < best[0]:
                best = (key, ckpt, st, chosen)
    steps, notes = [], _notes(inv, settings)
    resource_overrides: list[str] = []
    if best is not None:
        _, ckpt, st, chosen = best
        if ckpt != base.gradient_checkpointing:
            resource_overrides.append("resources.gradient_checkpointing=true")
        if st != base.strategy:
            resource_overrides += st.overrides()
    for s in settings:
        alternatives = _alternatives(inv, s, gpu_memory_gb)
        if best is not None:
            e, o = best[3][s.method]
            steps.append(MethodPlan(s.method, configured[s.method], e, alternatives, o))
        else:
            steps.append(MethodPlan(s.method, configured[s.method], None, alternatives, [],
                                    _why_not(inv, s, gpu_memory_gb)))
    overrides = resource_overrides + [o for m in steps for o in m.overrides]
    return CampaignPlan(inv.model, gpu_memory_gb, inv, steps, overrides, best is not None, notes)


def _alternatives(inv: ModelInventory, s: StepSettings, gpu_memory_gb: float) -> dict[str, Estimate]:
    """The configured settings with one change each (what the table shows beside the configured column)."""
    if s.method not in TRAINS:
        return {}
    out = {}
    if not s.gradient_checkpointing:
        out["checkpointing"] = dataclasses.replace(s, gradient_checkpointing=True)
    for st in SHIPPED:
        if st.name in ("zero2", "zero3", "zero3-offload") and st.covers(s.strategy) and st != s.strategy:
            out[st.name] = dataclasses.replace(s, strategy=st)
    if len(_halvings(s)) > 1:
        out[f"batch {s.batch // 2}x{s.grad_accum * 2}"] = dataclasses.replace(s, batch=s.batch // 2,
                                                                            grad_accum=s.grad_accum * 2)
    if s.precision == "no" and s.tunable_precision:
        out["bf16"] = dataclasses.replace(s, precision="bf16")
    return {k: estimate(inv, v, gpu_memory_gb) for k, v in out.items()}


def _most_reduced(s: StepSettings) -> StepSettings:
    if s.method not in TRAINS:
        return s
    k = _halvings(s)[-1]
    return dataclasses.replace(s, gradient_checkpointing=True, strategy=SHIPPED[-1],
                               precision="bf16" if s.tunable_precision and s.precision == "no" else s.precision,
                               batch=s.batch // 2 ** k, grad_accum=s.grad_accum * 2 ** k)


def _why_not(inv: ModelInventory, s: StepSettings, gpu_memory_gb: float) -> str:
    e = estimate(inv, _most_reduced(s), gpu_memory_gb)
    if e.fits:
        return ""   # fits alone; only the shared resources of another step failed
    name, size = e.largest_term()
    what = "with every reduction (checkpointing, zero3-offload, bf16, the smallest batch)" if s.method in TRAINS \
        else "as configured (a closed-form step has nothing to reduce)"
    return (f"{s.method}: {what} a GPU still needs {e.total / GIB:.3g} GiB, more than the "
            f"{e.budget / GIB:.3g} GiB usable of {gpu_memory_gb:g}; largest term: {name} {size / GIB:.3g} GiB")


def _notes(inv: ModelInventory, settings: list[StepSettings]) -> list[str]:
    notes = list(inv.notes)
    for s in settings:
        if s.method in TRAINS and trainable_params(inv, s) == 0:
            notes.append(f"{s.method} finds nothing to train in this {inv.pipeline}'s {inv.denoiser} "
                         f"(the method does not support this family yet)")
    return notes


# ---- the table -----------------------------------------------------------------------------------

def _gib(x: float) -> str:
    return f"{x / GIB:.3f}" if x < 10 * GIB else f"{x / GIB:.1f}"


def _millions(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


_FROZEN_WORD = {"auto": "bf16", "bf16": "bf16", "fp16": "fp16", "fp32": "fp32"}


def _describe(s: StepSettings) -> str:
    if s.method not in TRAINS:
        return f"closed form, no training; frozen encoders {_FROZEN_WORD[s.frozen_precision]}"
    parts = [f"batch {s.batch} ({math.ceil(s.batch / max(1, s.num_workers))} per worker) x accum {s.grad_accum}",
             "fp32" if s.precision == "no" else s.precision, s.strategy.name,
             "checkpointing" if s.gradient_checkpointing else "no checkpointing",
             f"frozen encoders {_FROZEN_WORD[s.frozen_precision]}"]
    if s.method == "lora":
        parts.insert(0, f"rank {s.rank}")
    return ", ".join(parts)


def format_plan(p: CampaignPlan) -> str:
    """The plan as a text table per step and the overrides to add."""
    inv = p.inventory
    out = [f"model {p.model} ({inv.pipeline}): " + ", ".join(f"{n} {_millions(c)}" for n, c in inv.components.items())
           + " parameters",
           (f"per GPU: {p.gpu_memory_gb:g} GiB, {p.gpu_memory_gb * USABLE:.1f} usable ({USABLE:.0%}); "
            f"{p.steps[0].configured.settings.num_workers} worker(s), one GPU each")]
    out += [f"note: {n}" for n in p.notes]
    for m in p.steps:
        conf, chosen = m.configured, m.chosen
        out.append("")
        trains = f"trains {_millions(conf.trainable)} parameters" if m.method in TRAINS else "trains nothing"
        out.append(f"step {m.method}: {trains}; {_describe(conf.settings)}")
        columns = [("configured", conf)]
        if chosen is not None and chosen.settings != conf.settings:
            columns.append(("planned", chosen))
        width = max(len(k) for k in conf.terms) + 2
        out.append(" " * (width + 2) + "".join(f"{label:>12}" for label, _ in columns) + "   GiB")
        for term in conf.terms:
            out.append(f"  {term:<{width}}" + "".join(f"{_gib(e.terms[term]):>12}" for _, e in columns))
        out.append(f"  {'total':<{width}}" + "".join(f"{_gib(e.total):>12}" for _, e in columns)
                   + f"   of {p.gpu_memory_gb * USABLE:.1f} usable")
        out.append(f"  {'verdict':<{width}}" + "".join(
            f"{('fits' if e.fits else 'too big') + f' {e.total / e.budget:.0%}':>12}" for _, e in columns))
        if any(e.host for _, e in columns):
            out.append(f"  {'CPU per worker':<{width}}" + "".join(f"{_gib(e.host):>12}" for _, e in columns))
        if chosen is not None and chosen.settings != conf.settings:
            out.append(f"  planned: {_describe(chosen.settings)}")
        if m.alternatives:
            out.append("  one change: " + "; ".join(f"{k} {_gib(e.total)} {'fits' if e.fits else 'no'}"
                                                   for k, e in m.alternatives.items()))
        if m.reason:
            out.append(f"  {m.reason}")
    out.append("")
    if p.unchanged:
        out.append("plan: the configured settings fit every step; nothing to change.")
    elif p.fits:
        out.append("plan: add these overrides: " + " ".join(p.overrides))
    else:
        out.append(f"plan: no settings fit {p.gpu_memory_gb:g} GiB GPUs (steps "
                   + ", ".join(m.method for m in p.steps if m.reason) + ", reasons above): use GPUs with more "
                   "memory, more workers (ZeRO-3 divides the denoiser's states by them), or a smaller model.")
    return "\n".join(out)
