"""Plots survive what real gates produce: point estimates a rounding error outside their bounds."""
import matplotlib

matplotlib.use("Agg")

from erasecore.contracts import Estimate  # noqa: E402
from orchestrator.outputs import report_plots  # noqa: E402


def test_errorbars_accept_a_value_just_outside_its_interval():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    report_plots._errorbars(ax, [0, 1], [Estimate(1.0, 0.9, 0.9999999999999998, 50), Estimate(0.5, 0.52, 0.6, 50)], "x")
    assert len(ax.lines) >= 1
    plt.close(fig)
