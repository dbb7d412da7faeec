"""The report's figures as PNG bytes, from plain numbers: no manifest, no HTML here.

matplotlib is imported inside each function and drawn through Figure + the Agg canvas, never
pyplot: no global backend is switched, no display is needed, and importing this module is free.
"""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

from erasecore.contracts import Estimate


def _figure(width: float = 7.0, height: float = 3.2):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _errorbars(ax, xs: Sequence[float], estimates: Sequence[Estimate | None], label: str, **style) -> None:
    """Point estimates with their Wilson intervals; steps without a measurement are left out."""
    pts = [(x, e) for x, e in zip(xs, estimates) if e is not None]
    if not pts:
        return
    x = [p[0] for p in pts]
    y = [p[1].value for p in pts]
    # max(0, ...): a point estimate can sit a rounding error (or, for ratios, more) outside its bounds
    err = [[max(0.0, p[1].value - p[1].lower) for p in pts], [max(0.0, p[1].upper - p[1].value) for p in pts]]
    ax.errorbar(x, y, yerr=err, fmt="o-", capsize=3, label=label, **style)


def _steps_axis(ax, labels: Sequence[str], ylabel: str) -> None:
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def training_curves(steps: Sequence[float], loss: Sequence[float], grad_norm: Sequence[float | None],
                    lr: Sequence[float | None]) -> bytes:
    """One attempt's fine-tune: loss per logged step (left axis), gradient norm and learning rate (right axes)."""
    fig = _figure(4.8, 2.8)
    ax = fig.add_subplot()
    ax.plot(steps, loss, "-", color="#3949ab", lw=1.5, label="loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss", color="#3949ab")
    ax.grid(alpha=0.3)
    norms = [(s, g) for s, g in zip(steps, grad_norm) if g is not None]
    if norms:
        right = ax.twinx()
        right.plot([p[0] for p in norms], [p[1] for p in norms], "-", color="#ef6c00", lw=1, alpha=0.8,
                   label="grad norm")
        right.set_ylabel("grad norm", color="#ef6c00")
    rates = [v for v in lr if v is not None]
    if rates:
        low, high = min(rates), max(rates)
        ax.set_title(f"lr {low:.2g}" if low == high else f"lr {low:.2g} .. {high:.2g}", fontsize=9)
    return _png(fig)


def forgetting_retain(labels: Sequence[str], forgetting: Sequence[Estimate | None],
                      retain: Sequence[Estimate | None], min_forgetting: float, min_retain: float) -> bytes:
    """Forgetting and Retain per step with Wilson intervals and the gate's thresholds."""
    fig = _figure()
    ax = fig.add_subplot()
    xs = range(len(labels))
    _errorbars(ax, xs, forgetting, "Forgetting", color="#1565c0")
    _errorbars(ax, xs, retain, "Retain", color="#ef6c00")
    ax.axhline(min_forgetting, color="#1565c0", ls="--", lw=1, label=f"min forgetting {min_forgetting:.2f}")
    ax.axhline(min_retain, color="#ef6c00", ls=":", lw=1, label=f"min retain {min_retain:.2f}")
    ax.set_ylim(-0.02, 1.1)
    _steps_axis(ax, labels, "proportion")
    ax.legend(loc="lower left", fontsize=8)
    return _png(fig)


def retain_by_distance(labels: Sequence[str], by_distance: Mapping[str, Sequence[Estimate | None]],
                       min_retain: float) -> bytes:
    """Retain of near (siblings) and far concepts per step: collateral damage falls on neighbours first."""
    fig = _figure()
    ax = fig.add_subplot()
    n = max(1, len(by_distance))
    for i, (distance, estimates) in enumerate(sorted(by_distance.items())):
        offset = (i - (n - 1) / 2) * 0.12   # side by side, so the intervals do not hide each other
        _errorbars(ax, [x + offset for x in range(len(labels))], estimates, distance)
    ax.axhline(min_retain, color="grey", ls=":", lw=1, label=f"min retain {min_retain:.2f}")
    ax.set_ylim(-0.02, 1.1)
    _steps_axis(ax, labels, "retain")
    ax.legend(loc="lower left", fontsize=8)
    return _png(fig)


def cumulative_drift(labels: Sequence[str], earlier: Mapping[str, Sequence[Estimate | None]],
                     max_cumulative_acc: float, drift: Sequence[Estimate | None], max_drift: float) -> bytes:
    """Left: earlier-erased concepts' accuracy at each later step (must stay low). Right: drift from the base."""
    fig = _figure(9.0, 3.2)
    left, right = fig.subplots(1, 2)
    xs = range(len(labels))
    for concept, estimates in sorted(earlier.items()):
        _errorbars(left, xs, estimates, concept)
    left.axhline(max_cumulative_acc, color="#c62828", ls="--", lw=1, label=f"max {max_cumulative_acc:.2f}")
    left.set_ylim(-0.02, 1.05)
    _steps_axis(left, labels, "earlier concept still drawn")
    left.legend(loc="upper left", fontsize=8)
    left.set_title("erased concepts stay erased", fontsize=9)
    _errorbars(right, xs, [d if d is not None and d.n else None for d in drift], "label changed vs base")
    right.axhline(max_drift, color="#c62828", ls="--", lw=1, label=f"max drift {max_drift:.2f}")
    right.set_ylim(-0.02, 1.05)
    _steps_axis(right, labels, "retain images changed")
    right.legend(loc="upper left", fontsize=8)
    right.set_title("drift from the base model (same prompt and seed)", fontsize=9)
    return _png(fig)


def parameter_drift(labels: Sequence[str], relative: Mapping[str, Sequence[float | None]]) -> bytes:
    """Per layer group, the norm of the summed deltas over the base weights' norm, one curve per group."""
    fig = _figure()
    ax = fig.add_subplot()
    for group, values in relative.items():
        pts = [(x, v) for x, v in enumerate(values) if v is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=group)
    _steps_axis(ax, labels, "||sum of deltas|| / ||base||")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("drift from the base weights per layer group", fontsize=9)
    return _png(fig)


def capability(labels: Sequence[str], scores: Sequence[float | None],
               entries: Mapping[str, Sequence[float | None]]) -> bytes:
    """Left: the capability score per step (1.0 = draws the kept bench entries as the base does).
    Right: each bench entry's share drawn over the base's, per step (blank: not measured or never drawn)."""
    fig = _figure(10.0, max(3.2, 0.22 * len(entries) + 1.2))
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.3])
    pts = [(x, s) for x, s in enumerate(scores) if s is not None]
    left.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="#2e7d32", label="capability")
    left.axhline(1.0, color="grey", ls=":", lw=1, label="base")
    left.set_ylim(0, 1.15)
    _steps_axis(left, labels, "recognised / base (kept entries)")
    left.legend(loc="lower left", fontsize=8)
    names = list(entries)
    grid = [[float("nan") if v is None else v for v in entries[n]] for n in names]
    image = right.imshow(grid, aspect="auto", cmap="RdYlGn", vmin=0.0, vmax=1.0, interpolation="nearest")
    right.set_yticks(range(len(names)), names, fontsize=7)
    right.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    right.set_title("per bench entry: drawn / base", fontsize=9)
    fig.colorbar(image, ax=right, shrink=0.8)
    return _png(fig)
