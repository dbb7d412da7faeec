"""The rebound alarm: an earlier erased concept's accuracy climbing back over a campaign. Pure.

Sequential erasure is reported to lose what it erased as later deltas pile up. Each gate measures
the earlier concepts again (GateReport.cumulative); the alarm compares that accuracy with the
concept's own target accuracy on the gate that committed it, and fires when it has climbed by more
than `threshold` (spec: alarms.rebound). It is a warning in the progress lines, report and W&B, not a
gate check: the gate's max_cumulative_acc is what rejects.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from erasecore.contracts import Estimate
from orchestrator.manifest import History


@dataclass(frozen=True)
class Rebound:
    concept: str
    step: int               # the gate that measured it
    at_commit: float        # its target accuracy on the gate that committed it
    now: float              # its accuracy on this gate

    @property
    def climb(self) -> float:
        return self.now - self.at_commit

    def text(self) -> str:
        return (f"rebound: {self.concept} drawn {self.now:.2f} at step {self.step}, "
                f"{self.at_commit:.2f} when committed (+{self.climb:.2f})")


def committed_accuracy(history: History) -> dict[str, float]:
    """Each committed concept's target accuracy on the gate that committed it."""
    out = {}
    for c in history.commits:
        attempt = next((a for a in history.attempts_for(c.step) if a.attempt == c.attempt), None)
        if attempt is not None and attempt.report is not None:
            out[c.concept] = attempt.report.target_acc.value
    return out


def rebounds(at_commit: Mapping[str, float], cumulative: Mapping[str, Estimate], step: int,
             threshold: float) -> list[Rebound]:
    """The earlier concepts of one gate whose accuracy climbed more than `threshold` above it at commit."""
    return [Rebound(c, step, at_commit[c], e.value) for c, e in sorted(cumulative.items())
            if c in at_commit and e.n > 0 and round(e.value - at_commit[c], 9) > threshold]   # 0.2 - 0.05 is 0.15


def campaign_rebounds(history: History, threshold: float) -> list[Rebound]:
    """Every alarm over a campaign's measured attempts, in step order."""
    at_commit = committed_accuracy(history)
    out = []
    for a in sorted(history.attempts, key=lambda a: (a.step, a.attempt)):
        if a.report is not None:
            out += rebounds(at_commit, a.report.cumulative, a.step, threshold)
    return out
