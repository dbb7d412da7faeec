"""The `erase` command line. Every user error is one line on stderr and exit code 2.

    erase run CAMPAIGN.yaml [key=value ...]     progressive campaign on an embedded local Ray
    erase toyworld showcase                      draw a few prompts with the embedded toy model
    erase toyworld train [--out DIR]             retrain the toy world from scratch (~30-40 min, 2 cores)
    erase step REQUEST.json                      one erasure step without Ray (what a worker runs)
"""
from __future__ import annotations

import argparse
import sys
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
    from jobs.models import ModelLoadError
    from jobs.toyworld.world import UnknownConceptError
    from orchestrator.errors import CampaignError

    errors: list[type[BaseException]] = [CampaignError, UnknownConceptError, ModelLoadError, FileNotFoundError]
    try:
        from jobs.deltas import DeltaError
        from jobs.methods.interface import MethodConfigError
        errors += [DeltaError, MethodConfigError]
    except ImportError:  # torch missing: those errors cannot occur either
        pass
    return tuple(errors)


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
    return p


@command("toyworld")
def _toyworld(args) -> int:
    if args.toy_command == "showcase":
        from jobs.toyworld.showcase import DEFAULT_PROMPTS, showcase

        showcase(tuple(args.prompts) or DEFAULT_PROMPTS, out=args.out)
        return 0
    from jobs.toyworld import build

    argv = ["--scale", str(args.scale)] + (["--out", str(args.out)] if args.out else [])
    build.main(argv)
    return 0


@command("step")
def _step(args) -> int:
    from jobs.contracts import StepRequest, from_json
    from jobs.step import run_step

    if not args.request.is_file():
        raise FileNotFoundError(f"no such request file: {args.request}")
    result = run_step(from_json(StepRequest, args.request.read_text()))
    r = result.report
    print(f"delta {result.delta.path}  forgetting {r.forgetting.value:.2f}  retain {r.retain.value:.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except user_errors() as e:
        msg = e.args[0] if isinstance(e, FileNotFoundError) and e.args and isinstance(e.args[0], str) else str(e)
        print(f"error: {' '.join(msg.split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
