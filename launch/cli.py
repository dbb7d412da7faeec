"""The `erase` command line. Every user error is one line on stderr and exit code 2.

    erase run CAMPAIGN.yaml [key=value ...]      progressive campaign on an embedded local Ray (exit 1 if halted)
    erase resume RUNS_DIR|CAMPAIGN.yaml          continue a campaign from its journal
    erase submit CAMPAIGN.yaml --address URL     run it as a Ray job on a cluster; prints the job id
    erase status RUNS_DIR|CAMPAIGN.yaml|JOB_ID   per-concept table (local journal) or the job's status
    erase status TARGET --watch  (erase watch)   live view: progress of the running phase, ETA (Ctrl-C ends it)
    erase logs JOB_ID [--follow]                 the job's output
    erase cancel JOB_ID                          stop the job (resume continues it later)
    erase list                                   jobs on the cluster
    erase export TARGET --format diffusers|lora|comfyui [--upto k] [--per-concept]   the committed model
    erase report TARGET [--out FILE]             self-contained HTML report
    erase toyworld showcase                      draw a few prompts with the embedded toy model
    erase toyworld train [--out DIR]             retrain the toy world from scratch (~30-40 min, 2 cores)
    erase step REQUEST.json                      one erasure step without Ray (what a worker runs)
    erase plan CAMPAIGN.yaml [key=value ...]     per-GPU memory of each step, and settings that fit
    erase judge-check CAMPAIGN.yaml [key=value ...]   can the judge see each concept on the base model? (exit 2: no)
    erase guard RUNS_DIR PROMPTS_FILE [--policy touched|all] [--on-detect block|flag]   serve the erased model guarded
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def register(fn):
        COMMANDS[name] = fn
        return fn
    return register


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'the input was wrong', printed as one line."""
    from erasecore.errors import CampaignError

    return (CampaignError, FileNotFoundError)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="erase", description="Progressive, gated concept erasure for diffusion models.",
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    tw = sub.add_parser("toyworld", help="the embedded toy concept world: showcase or retrain it")
    tw_sub = tw.add_subparsers(dest="toy_command", required=True)
    sc = tw_sub.add_parser("showcase", help="generate a grid for a few prompts and print the evaluator's verdicts")
    sc.add_argument("prompts", nargs="*", help="prompts in the toy world's vocabulary (default: a fixed set)")
    sc.add_argument("--out", type=Path, default=Path("runs/showcase.png"), help="where to save the grid PNG")
    tr = tw_sub.add_parser("train", help="retrain the toy world deterministically (VAE, evaluator, UNet)")
    tr.add_argument("--out", type=Path, default=None, help="output folder (default: the shipped weights folder)")
    tr.add_argument("--scale", type=float, default=1.0, help="scale all step counts (0.01 = smoke run)")
    st = sub.add_parser("step", help="run one erasure step from a StepRequest JSON, without Ray")
    st.add_argument("request", type=Path, help="StepRequest JSON (as written beside every step)")
    _campaign_parsers(sub)
    _job_parsers(sub)
    _artifact_parsers(sub)
    return p


OVERRIDES_HELP = "overrides of the campaign file, as dotted key=value (retry.max_attempts=5 gate.min_retain=0.9)"
ADDRESS_HELP = "Ray dashboard / Jobs API address (default: $RAY_ADDRESS if it is an http address, else {})"
TOKEN_NOTE = ("Token authentication: the token is read from RAY_AUTH_TOKEN, else the file RAY_AUTH_TOKEN_PATH, "
              "else ~/.ray/auth_token, and sent with every request (RAY_AUTH_MODE=disabled sends none).")


def _sub(sub, name: str, help: str, description: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=description,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _local_ray_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num-cpus", type=int, default=None,
                        help="CPUs of the embedded Ray (default: all of this machine's)")
    parser.add_argument("--num-gpus", type=int, default=None,
                        help="GPUs of the embedded Ray (default: those Ray detects)")
    parser.add_argument("--schedule-timeout", type=float, default=None, metavar="SECONDS",
                        help="fail when no node can hold a step for this long (default: 60)")
    parser.add_argument("--allow-spec-change", action="store_true",
                        help="continue a journal started from a different spec (e.g. a raised retry.max_attempts "
                             "or concepts appended); the old spec is kept in the journal, commits stay")


def _campaign_parsers(sub) -> None:
    run = _sub(sub, "run", "run a campaign to its end on an embedded local Ray (exit 0 finished, 1 halted)",
               "Erase the campaign's concepts one after another, each erased, validated and gated before it is\n"
               "committed to the journal on storage_path. Starts a private Ray on this machine (loopback only,\n"
               "token auth on, no dashboard); inside a Ray job (RAY_ADDRESS set) it joins that cluster instead.\n"
               "Running it again on the same campaign continues it, like `erase resume`.\n\n"
               "exit status: 0 finished (every concept committed or skipped), 1 halted, 2 user error")
    run.add_argument("campaign", type=Path, help="campaign YAML (e.g. configs/campaigns/toy.yaml)")
    run.add_argument("overrides", nargs="*", metavar="key=value", help=OVERRIDES_HELP)
    _local_ray_options(run)
    resume = _sub(sub, "resume", "continue a campaign from its journal: committed steps kept, interrupted ones redone",
                  "Continue a campaign after a crash, a cancel or a halt. Committed steps are never redone (their\n"
                  "deltas stay byte-identical); an attempt that was running when the driver died is redone with\n"
                  "the same number and settings. TARGET is the campaign directory (storage_path, holding\n"
                  "manifest.json) or the campaign YAML. Overrides may change resources/tracking; a change of\n"
                  "anything that alters results is refused unless --allow-spec-change.\n\n"
                  "exit status: 0 finished, 1 halted, 2 user error")
    resume.add_argument("target", help="campaign directory (storage_path) or campaign YAML")
    resume.add_argument("overrides", nargs="*", metavar="key=value", help=OVERRIDES_HELP)
    _local_ray_options(resume)
    plan = _sub(sub, "plan", "estimate each step's per-GPU memory and pick settings that fit resources.gpu_memory_gb",
                "Before a campaign starts: count the model's parameters from its configs (no weights are loaded;\n"
                "a hub id is read from the local Hugging Face cache, or from the hub with model_source: workers),\n"
                "estimate the per-GPU memory of a step of every method the campaign may run (method and ladder)\n"
                "term by term (weights, frozen copy, gradients, optimizer, buffers, activations, overhead), and\n"
                "compare it with 90% of resources.gpu_memory_gb (GiB). If a step does not fit, the cheapest\n"
                "combination of changes that makes every step fit is printed as overrides to add: gradient\n"
                "checkpointing, a DeepSpeed ZeRO config from configs/deepspeed/, bf16, or a smaller batch with\n"
                "more gradient accumulation (same samples per optimizer step). If nothing fits, it says which term\n"
                "is the largest. The formula is in orchestrator/planning/memory_plan.py and docs/memory-planning.md. Works on a\n"
                "machine without a GPU: it plans as if each worker had one GPU of resources.gpu_memory_gb.\n\n"
                "exit status: 0 a plan fits (as configured or with the printed overrides), 1 nothing fits,\n"
                "2 user error")
    plan.add_argument("campaign", type=Path, help="campaign YAML (e.g. configs/campaigns/toy.yaml)")
    plan.add_argument("overrides", nargs="*", metavar="key=value",
                      help=OVERRIDES_HELP + "; e.g. resources.gpu_memory_gb=24 resources.num_workers=4")
    plan.add_argument("--json", action="store_true", help="print the plan and the model's inventory as JSON")
    check = _sub(sub, "judge-check", "can the campaign's judge see each concept on the base model's own images?",
                 "Before anything is erased: draw the base model's images of each concept's gate prompts (its target\n"
                 "and evasion prompts, and the retain prompts of the other concepts) and judge them with the\n"
                 "campaign's judge. Per concept, the table shows the hit rate (the concept seen on its own prompts)\n"
                 "and the false-positive rate (seen on the other prompts), each with its Wilson interval at\n"
                 "validation.confidence. A concept the base model barely draws (hit rate's lower bound < 0.5) or the\n"
                 "judge cannot tell apart (hit rate's lower bound <= false positives' upper bound) is refused: its\n"
                 "gates could not measure forgetting. validation.allow_weak_judge=true flags it instead.\n"
                 "What the judge saw is cached in <storage_path>/cache: checking again draws nothing.\n\n"
                 "exit status: 0 every concept ok or flagged, 2 a concept refused or a user error")
    check.add_argument("campaign", type=Path, help="campaign YAML (e.g. configs/campaigns/toy.yaml)")
    check.add_argument("overrides", nargs="*", metavar="key=value",
                       help=OVERRIDES_HELP + "; e.g. validation.seeds=1 validation.allow_weak_judge=true")


def _artifact_parsers(sub) -> None:
    ex = _sub(sub, "export", "write the committed model: merged diffusers pipeline, diffusers LoRA or ComfyUI LoRA",
              "Export the campaign's committed deltas (only committed records, each sha256-checked):\n"
              "  diffusers  a full merged pipeline directory (DiffusionPipeline.from_pretrained loads it)\n"
              "  lora       a stacked diffusers LoRA directory (pipe.load_lora_weights)\n"
              "  comfyui    one kohya-format .safetensors file (ComfyUI, A1111), alpha written per module\n"
              "  lora --per-concept  one named adapter per committed concept, <out>/<concept>/, listed in\n"
              "             <out>/adapters.json (pipe.load_lora_weights(dir, adapter_name=...), pipe.set_adapters)\n"
              "Dense deltas become LoRA at full rank (exact) unless --rank is given.")
    ex.add_argument("target", help="campaign directory (storage_path) or campaign YAML")
    ex.add_argument("--format", dest="fmt", required=True, choices=("diffusers", "lora", "comfyui"))
    ex.add_argument("--upto", type=int, default=None, help="export the model after step k (default: every commit)")
    ex.add_argument("--out", type=Path, default=None, help="output path (default: <storage_path>/exports/...)")
    ex.add_argument("--rank", type=int, default=None, help="LoRA rank for dense deltas (default: exact full rank)")
    ex.add_argument("--skip-non-2d", action="store_true",
                    help="leave out changes LoRA cannot carry (biases, norms, convolutions: ESD-u) instead of failing")
    ex.add_argument("--per-concept", action="store_true",
                    help="with --format lora: one switchable adapter per committed concept (each step's own delta)")
    rp = _sub(sub, "report", "write a self-contained HTML report of a campaign",
              "Timeline of attempts and decisions, per-concept metrics with bounds, plots, image grids,\n"
              "and the audit log (who ran what, when, which config and delta hashes).")
    rp.add_argument("target", help="campaign directory (storage_path) or campaign YAML")
    rp.add_argument("--out", type=Path, default=None, help="HTML file (default: <storage_path>/report.html)")
    _guard_parser(sub)


GUARD_HELP = """\
Serve a campaign's erased model guarded, for the prompts of PROMPTS_FILE (one per line; blank lines and
lines starting with # are skipped). For each prompt:

  1. pre-filter: built from the campaign's concept set for its committed concepts (names, synonyms,
     paraphrases, subclasses, variants), case- and plural-insensitive, in any word order, with misspellings
     (1 edit in a word of 4-7 letters, 2 from 8), fragments ("st ar") and glued words ("redstar"); words the
     set does not list are read by the model's own text encoder (threshold calibrated on the set). A
     neighbour the set names (diamond beside square) is never matched.
  2. controller: --policy touched switches on the per-concept adapters of the concepts the prompt touches
     (none touched: the base model draws it); --policy all keeps every adapter on (the committed model).
     --negative puts the names of the concepts whose adapters are on into the negative prompt.
  3. generation with the campaign's gate settings (steps, guidance), noise seed --seed.
  4. audit: the campaign's judge, as its gates recorded it (weights sha256, thresholds), asks of the image
     each committed concept's question.
  --on-detect block: a prompt the pre-filter matches is refused (blocked_prompt) and an image the audit
  sees a concept in is withheld (blocked_image). --on-detect flag: both are drawn, kept and marked flagged.

Every decision is one JSON line appended to the audit log (--log, default <out>/audit.jsonl), never
rewritten: timestamp (UTC), prompt_sha256, concepts_matched, adapters_active, negative_prompt, judge (name,
weights sha256), thresholds, judge_scores, verdict (allowed | blocked_prompt | blocked_image | flagged),
reasons, schema (docs/serving.md has the full schema). Images kept are written to --out as NNNN.png.

The per-concept adapters come from <storage_path>/exports/<campaign>-step<k>-lora-per-concept (exported
there first if absent; --adapters names another export of the same commits); guard.json is written beside
their adapters.json, and that directory is what the Python API (jobs.serving.guarded.GuardedPipeline) and
the ComfyUI nodes (comfyui/) load. --prepare-only writes it and stops.

exit status: 0 every prompt decided (blocks are decisions, not errors), 2 user error (no campaign there,
nothing committed, an empty or missing prompt file, an unknown policy)"""


def _guard_parser(sub) -> None:
    from erasecore.serving import ON_DETECT, POLICIES

    g = _sub(sub, "guard", "serve the erased model guarded: prompt pre-filter, per-concept adapters, output audit, "
             "audit log", GUARD_HELP)
    g.add_argument("runs", help="the campaign directory (storage_path, holding manifest.json)")
    g.add_argument("prompts", nargs="?", type=Path, default=None, metavar="PROMPTS_FILE",
                   help="text file of prompts, one per line (required unless --prepare-only)")
    g.add_argument("--out", type=Path, default=None, help="where images and the log go (default: <storage_path>/guard)")
    g.add_argument("--policy", choices=POLICIES, default="touched",
                   help="adapters on: those of the concepts a prompt touches (default), or all")
    g.add_argument("--on-detect", dest="on_detect", choices=ON_DETECT, default="block",
                   help="a detected concept blocks (default: no image) or flags (image kept, marked)")
    g.add_argument("--negative", action="store_true",
                   help="put the names of the concepts whose adapters are on into the negative prompt")
    g.add_argument("--log", type=Path, default=None, help="the JSONL audit log to append to (default: <out>/audit.jsonl)")
    g.add_argument("--seed", type=int, default=0, help="noise seed of every image (default 0)")
    g.add_argument("--adapters", type=Path, default=None,
                   help="a per-concept export of the campaign's commits (default: the campaign's own, made if absent)")
    g.add_argument("--prepare-only", action="store_true",
                   help="write the serving bundle (adapters + guard.json), print its path, generate nothing")


def _job_parsers(sub) -> None:
    from launch.jobs_api import DEFAULT_ADDRESS

    def address(parser):
        parser.add_argument("--address", default=None, help=ADDRESS_HELP.format(DEFAULT_ADDRESS))

    submit = _sub(sub, "submit", "run a campaign as a Ray job on a cluster (Ray Jobs API); prints the job id",
                  "Validate the campaign here, then submit `erase run` for it as a Ray job. The campaign file is\n"
                  "uploaded with the job; the `erase` package must be installed on the cluster. A relative\n"
                  "storage_path is made absolute here: it must be a path every node can reach (shared storage).\n"
                  "The job id is <campaign>-<UTC time>.\n\n" + TOKEN_NOTE)
    submit.add_argument("campaign", type=Path, help="campaign YAML")
    submit.add_argument("overrides", nargs="*", metavar="key=value", help=OVERRIDES_HELP)
    submit.add_argument("--follow", action="store_true", help="stream the job's logs until it ends; "
                        "exit 0 if it succeeded, 1 if not")
    address(submit)
    status = _sub(sub, "status", "where a campaign stands: a local journal's table, or a job's status",
                  "TARGET is a campaign directory (storage_path) or campaign YAML: print the per-concept table\n"
                  "from its journal, the running phase's last progress record and the ETA, no Ray needed.\n"
                  "Otherwise TARGET is a job id, asked of the cluster at --address.\n\n"
                  "--watch redraws a live table (state, attempt, phase, progress bar, time left, last metrics,\n"
                  "ETA) until the campaign stops running; for a job id it watches the job's storage_path,\n"
                  "which must be mounted on this machine (shared storage).\n\n" + TOKEN_NOTE)
    status.add_argument("target", help="campaign directory, campaign YAML, or job id")
    _watch_options(status, flag=True)
    address(status)
    watch = _sub(sub, "watch", "live view of a campaign (same as erase status TARGET --watch)",
                 "Redraw a table of the campaign's concepts every --interval seconds: state, attempt, the\n"
                 "running phase with a progress bar, its time left and last metrics, and the campaign's ETA.\n"
                 "Reads the files on storage_path only. Ends when the campaign stops running, or on Ctrl-C.\n\n"
                 + TOKEN_NOTE)
    watch.add_argument("target", help="campaign directory, campaign YAML, or job id")
    _watch_options(watch, flag=False)
    address(watch)
    logs = _sub(sub, "logs", "print a job's output (progress lines and final table)",
                "Print what the job's driver wrote so far; --follow streams it until the job ends.\n\n" + TOKEN_NOTE)
    logs.add_argument("job_id", help="job id, as printed by `erase submit` or `erase list`")
    logs.add_argument("--follow", "-f", action="store_true", help="stream new output until the job ends")
    address(logs)
    cancel = _sub(sub, "cancel", "stop a running job (the journal keeps every commit; resume continues it)",
                  "Ask Ray to stop the job's driver. Committed steps stay committed; the attempt that was\n"
                  "running is redone by `erase resume` or a new submit.\n\n" + TOKEN_NOTE)
    cancel.add_argument("job_id", help="job id")
    address(cancel)
    listing = _sub(sub, "list", "list the jobs on the cluster", "One line per job: id, status, start time, "
                   "entrypoint.\n\n" + TOKEN_NOTE)
    address(listing)


def _watch_options(parser: argparse.ArgumentParser, flag: bool) -> None:
    if flag:
        parser.add_argument("--watch", "-w", action="store_true", help="redraw a live view until the campaign ends")
    parser.add_argument("--interval", type=float, default=1.0, metavar="SECONDS", help="redraw period (default 1)")


@command("toyworld")
def _toyworld(args) -> int:
    if args.toy_command == "showcase":
        from orchestrator.in_process import toy_showcase

        toy_showcase(args.prompts, out=args.out)
        return 0
    from orchestrator.in_process import toy_build

    argv = ["--scale", str(args.scale)] + (["--out", str(args.out)] if args.out else [])
    toy_build(argv)
    return 0


@command("step")
def _step(args) -> int:
    request = _read_request(args.request)   # before torch is imported
    from orchestrator.integrity import verify_delta

    for k, parent in enumerate(request.parents, 1):   # the committed deltas it builds on, before a model loads
        verify_delta(parent.path, parent.sha256, f"parent delta {k} of {args.request}")
    from orchestrator.in_process import run_step

    result = run_step(request)
    r = result.report
    print(f"delta {result.delta.path}  forgetting {r.forgetting.value:.2f}  retain {r.retain.value:.2f}")
    return 0


@command("run")
def _run(args) -> int:
    from orchestrator.integrity import verify_campaign
    from orchestrator.manifest import Manifest
    from orchestrator.spec import load_spec

    spec = load_spec(str(args.campaign), args.overrides)
    if Manifest.exists(spec.storage_path):   # running it again continues it, like resume: check it first
        verify_campaign(spec.storage_path)
    return _drive(spec, args)


@command("plan")
def _plan(args) -> int:
    import json

    from orchestrator import schedule
    from orchestrator.planning import memory_plan
    from orchestrator.preflight import check_model_source, preflight
    from orchestrator.spec import load_spec

    settled = preflight(load_spec(str(args.campaign), args.overrides), run=False)   # before torch is imported
    check_model_source(settled.spec, weights=False)   # a hub id's configs: in the local cache, or one line
    _quiet_hub(offline=settled.spec.model_source == "local")
    from erasecore.inventory import LORA_TARGETS
    from orchestrator.in_process import model_inventory

    res = settled.spec.resources
    strategy = memory_plan.strategy_of(res.strategy, res.deepspeed_config, settled.parallel.deepspeed_config)
    inv = model_inventory(settled.spec.model, settled.hparams.get("lora", {}).get("target_modules", LORA_TARGETS))
    steps = [memory_plan.step_settings(name, hp, res.num_workers, strategy, res.gradient_checkpointing,
                                       res.frozen_precision)
             for name, hp in settled.hparams.items()]
    result = memory_plan.plan(inv, steps, res.gpu_memory_gb)
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    else:
        if res.gpus_per_step == 0:
            print(f"note: resources.gpus_per_step is 0 (steps run on CPU): planned as if each worker had a GPU "
                  f"of {res.gpu_memory_gb:g} GiB")
        print(schedule.describe(settled.spec))
        print(memory_plan.format_plan(result))
    return 0 if result.fits else 1


@command("judge-check")
def _judge_check(args) -> int:
    from erasecore.judge_check import require, table
    from orchestrator.preflight import preflight
    from orchestrator.spec import load_spec

    settled = preflight(load_spec(str(args.campaign), args.overrides))   # before torch is imported
    from orchestrator.in_process import judge_check

    check = judge_check(settled)
    print(table(check))
    require(check)   # a refused concept: the table above, then one error line and exit 2
    return 0


def _quiet_hub(offline: bool) -> None:
    """Keep the Hugging Face hub client's retry and warning lines off the terminal (a failed read is one
    error: line); `offline` reads a hub id from the local cache only (model_source: local)."""
    import logging

    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_VERBOSITY", "error")   # read when huggingface_hub is imported
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)   # and if it already was


@command("resume")
def _resume(args) -> int:
    return _drive(_resume_spec(args.target, args.overrides), args)


def _drive(spec, args) -> int:
    """Run the driver on Ray to the campaign's end; 0 finished, 1 halted."""
    from launch import cluster
    from orchestrator.preflight import preflight

    settled = preflight(spec)   # every mistake the campaign names is one line before Ray starts
    cluster.configure()         # before the driver imports ray: the embedded Ray must bind to loopback
    from orchestrator.ray import driver as runner

    timeout = args.schedule_timeout if args.schedule_timeout is not None else runner.SCHEDULE_TIMEOUT_S
    with cluster.session(args.num_cpus, args.num_gpus):
        outcome = runner.run_campaign(settled, schedule_timeout_s=timeout, allow_spec_change=args.allow_spec_change)
    return 0 if outcome.status == "finished" else 1


def _resume_spec(target: str, overrides: list[str]):
    """The spec of an existing campaign, from its directory's snapshot or from a campaign YAML."""
    from erasecore.errors import ManifestError
    from orchestrator.integrity import verify_campaign
    from orchestrator.manifest import SPEC_SNAPSHOT, Manifest
    from orchestrator.spec import load_spec

    path = Path(target)
    if path.is_dir():
        if not Manifest.exists(path):
            raise ManifestError(f"no campaign at {path}: no {path / 'manifest.json'} (start one with `erase run`)")
        verify_campaign(path)   # spec.yaml and every committed delta as the journal says, before Ray starts
        # storage_path is operational: pointing it here keeps the spec hash and works from any directory.
        return load_spec(str(path / SPEC_SNAPSHOT), [*overrides, f"storage_path={path.resolve()}"])
    if not path.is_file() and not target.endswith((".yaml", ".yml")):
        raise ManifestError(f"no campaign at {target}: not a directory or a campaign YAML")
    spec = load_spec(target, overrides)
    if not Manifest.exists(spec.storage_path):
        raise ManifestError(f"campaign {spec.name!r} has no journal at {spec.storage_path}; "
                            f"start it with `erase run {target}`")
    verify_campaign(spec.storage_path)
    return spec


@command("export")
def _export(args) -> int:
    from orchestrator.outputs.export import check_format, export_campaign

    check_format(args.fmt, args.per_concept)   # a wrong combination of options fails before the journal is read
    _, root = _local_campaign(args.target) or (None, None)
    if root is None:
        raise FileNotFoundError(f"no campaign directory or YAML named {args.target}")
    out = export_campaign(root, args.fmt, out=args.out, upto=args.upto, rank=args.rank, skip_non_2d=args.skip_non_2d,
                          per_concept=args.per_concept)
    print(f"exported ({args.fmt}{', one adapter per concept' * args.per_concept}): {out}")
    return 0


@command("guard")
def _guard(args) -> int:
    from erasecore.errors import ConfigError

    prompts = [] if args.prepare_only else _read_prompts(args.prompts)   # a bad prompt file fails first
    if not Path(args.runs).is_dir():
        raise ConfigError(f"no campaign directory {args.runs} (the campaign's storage_path, holding manifest.json)")
    spec, root = _local_campaign(args.runs)
    from orchestrator.outputs.serving import prepare_bundle

    bundle = prepare_bundle(root, spec, args.adapters)
    if args.prepare_only:
        print(f"serving bundle: {bundle}")
        return 0
    from orchestrator.in_process import guard

    out = args.out or root / "guard"
    log = args.log or out / "audit.jsonl"
    print(f"{'#':>4}  {'verdict':14}  {'touched':16}  {'adapters on':16}  {'judge sees':16}  prompt")
    results = guard(bundle, prompts, out, args.policy, args.on_detect, args.negative, log, args.seed,
                    report=_guard_line(len(prompts)))
    counts = {v: sum(r.verdict == v for r in results) for v in ("allowed", "blocked_prompt", "blocked_image", "flagged")}
    print(f"guarded {len(results)} prompt{'s' * (len(results) != 1)}: "
          + ", ".join(f"{n} {v}" for v, n in counts.items()) + f"; images in {out}; audit log {log}")
    return 0


def _guard_line(total: int):
    seen = iter(range(total))

    def line(result) -> None:
        record = result.record
        touched = ",".join(result.filtered.concepts) or "-"
        active = "-" if record.adapters_active is None else (",".join(record.adapters_active) or "(none)")
        shown = ",".join(s.concept for s in result.audit if s.seen) or "-"
        print(f"{next(seen):>4}  {result.verdict:14}  {touched:16}  {active:16}  {shown:16}  {result.prompt}", flush=True)
    return line


def _read_prompts(path: Path | None) -> list[str]:
    from erasecore.errors import ConfigError

    if path is None:
        raise ConfigError("erase guard needs a PROMPTS_FILE (one prompt per line), or --prepare-only")
    if not path.is_file():
        raise ConfigError(f"no prompt file {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read prompt file {path}: {e}") from None
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise ConfigError(f"prompt file {path} has no prompts (one per line; blank lines and # comments skipped)")
    return prompts


@command("report")
def _report(args) -> int:
    from orchestrator.outputs.report import write_report

    _, root = _local_campaign(args.target) or (None, None)
    if root is None:
        raise FileNotFoundError(f"no campaign directory or YAML named {args.target}")
    print(f"report: {write_report(root, args.out)}")
    return 0


@command("status")
def _status(args) -> int:
    local = _local_campaign(args.target)
    if local is not None:
        return _watch_local(*local, args.interval) if args.watch else _print_status(*local)
    from launch.jobs_api import Jobs

    job = Jobs(args.address).status(args.target)
    if args.watch:
        return _watch_local(*_job_campaign(job), args.interval)
    print(f"{job.id}: {job.status}" + (f"  ({job.message})" if job.message else ""))
    print(f"  entrypoint: {job.entrypoint}")
    print(f"  started {_when(job.start_time)}" + (f", ended {_when(job.end_time)}" if job.end_time else ""))
    if job.storage_path:
        print(f"  storage_path: {job.storage_path}  (erase watch {job.storage_path})")
    return 0


@command("watch")
def _watch(args) -> int:
    args.watch = True
    return _status(args)


def _print_status(spec, root) -> int:
    """The journal's table, then the running phase's last record and the ETA."""
    from orchestrator.live import snapshot
    from orchestrator.manifest import Manifest
    from orchestrator.progress import progress_detail, summary_table

    snap = snapshot(spec, root)
    print(f"campaign {snap.campaign}: {snap.status_text()}")
    print(summary_table(spec, Manifest.open(root).history, root))
    running = next((r for r in snap.rows if r.state == "running"), None)
    if running is not None and snap.inflight is not None:
        detail = progress_detail(snap.last, snap.eta.phase_left if snap.eta else None) if snap.last else "no progress yet"
        ago = f", driver updated {snap.updated_ago:.0f}s ago" if snap.updated_ago is not None else ""
        print(f"now: step {running.step} {running.concept} attempt {snap.inflight.attempt} {running.method} "
              f"{running.phase or 'between phases'}: {detail}{ago}")
    if snap.eta is not None:
        print(f"ETA {snap.eta.text()} (if every attempt from now on passes to if every retry is used; +: at least)")
    if snap.stale and snap.driver is not False:   # no driver at all: the first line says so
        print("warning: the driver has written nothing for a while; if it died, `erase resume` continues it")
    return 0


def _watch_local(spec, root, interval: float) -> int:
    from orchestrator.outputs.live_view import watch

    status = watch(spec, root, interval=max(0.1, interval))
    return 0 if status == "finished" else 1


def _job_campaign(job):
    """(spec, storage_path) of a job's campaign, when its storage_path is reachable from here."""
    from erasecore.errors import ClusterError

    if not job.storage_path:
        raise ClusterError(f"job {job.id} does not record its storage_path (not submitted by `erase submit`); "
                           "run `erase watch STORAGE_PATH` where the storage is mounted")
    if not Path(job.storage_path, "manifest.json").is_file():
        raise ClusterError(f"job {job.id} keeps its campaign at {job.storage_path}, which has no journal here "
                           f"(not mounted on this machine, or the job has not started it yet)")
    return _local_campaign(job.storage_path)


def _local_campaign(target: str):
    """(spec, storage_path) when target names a campaign directory or YAML; None for a job id.

    The campaign is verified against its journal first (orchestrator/integrity.py: spec.yaml, and the sha256
    of every committed delta), so export, report, status and watch never show or ship a changed commit.
    That reads every committed delta once per call: `erase status` checks at each invocation (a person who
    runs it every second re-reads them every second; on the toy world that is a millisecond), `watch`
    only here, at its start: redrawing every second must not re-read GBs of deltas every second, and a
    delta committed while it watches was hashed by the commit itself (Manifest.commit)."""
    from erasecore.errors import ManifestError
    from orchestrator.integrity import verify_campaign
    from orchestrator.manifest import SPEC_SNAPSHOT, Manifest
    from orchestrator.spec import load_spec

    path = Path(target)
    if path.is_dir() or target.endswith((".yaml", ".yml")) or os.sep in target:
        if path.is_dir():
            if not Manifest.exists(path):
                raise ManifestError(f"no campaign at {path}: no {path / 'manifest.json'}")
            verify_campaign(path)   # before spec.yaml is parsed: a truncated one is named as such
            return load_spec(str(path / SPEC_SNAPSHOT), [f"storage_path={path}"]), path
        spec = load_spec(target)
        if not Manifest.exists(spec.storage_path):
            raise ManifestError(f"campaign {spec.name!r} has no journal at {spec.storage_path} yet")
        verify_campaign(spec.storage_path)
        return spec, Path(spec.storage_path)
    return None


@command("submit")
def _submit(args) -> int:
    from launch.jobs_api import Jobs
    from orchestrator.preflight import preflight
    from orchestrator.spec import load_spec

    spec = preflight(load_spec(str(args.campaign), args.overrides)).spec   # before the cluster is asked
    jobs = Jobs(args.address)
    job_id = jobs.submit(args.campaign, args.overrides, spec)
    print(f"submitted {job_id} to {jobs.address}")
    if not args.follow:
        print(f"  erase status {job_id}    erase logs {job_id} --follow    erase cancel {job_id}")
        return 0
    jobs.follow(job_id, lambda chunk: print(chunk, end="", flush=True))
    final = jobs.status(job_id)
    print(f"{job_id}: {final.status}")
    return 0 if final.status == "SUCCEEDED" else 1


@command("logs")
def _logs(args) -> int:
    from launch.jobs_api import Jobs

    jobs = Jobs(args.address)
    if args.follow:
        jobs.follow(args.job_id, lambda chunk: print(chunk, end="", flush=True))
    else:
        print(jobs.logs(args.job_id), end="")
    return 0


@command("cancel")
def _cancel(args) -> int:
    from launch.jobs_api import Jobs

    stopped = Jobs(args.address).cancel(args.job_id)
    print(f"stop requested for {args.job_id}" if stopped else f"{args.job_id} had already ended")
    return 0


@command("list")
def _list(args) -> int:
    from launch.jobs_api import Jobs

    jobs = Jobs(args.address).list()
    if not jobs:
        print("no jobs")
    for job in jobs:
        print(f"{job.id:<40} {job.status:<10} {_when(job.start_time):<20} {job.entrypoint}")
    return 0


def _read_request(path: Path):
    """A StepRequest JSON as written beside every step, its judge settled; one ConfigError line otherwise."""
    import dataclasses
    import json

    from erasecore.codec import from_json
    from erasecore.contracts import StepRequest
    from erasecore.errors import ConfigError
    from erasecore.judges import judge_for

    if not path.is_file():
        raise ConfigError(f"no such request file: {path}")
    try:
        request = from_json(StepRequest, path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not a step request (JSON as written beside every step): {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ConfigError(f"{path} is not a step request: {type(e).__name__}: {e}") from None
    judge = judge_for(request.model, request.validation.judge)
    if judge is None:
        raise ConfigError(f"{path}: model {request.model!r} has no judge in this build")
    return dataclasses.replace(request, validation=dataclasses.replace(request.validation, judge=judge))


def _when(seconds: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) if seconds else "-"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except user_errors() as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
