"""What `radmatch evaluate` shows beyond the paper's table: the verification numbers forensic
examiners ask for, and one figure with the CMC curves by interval and the similarity distributions.

Both take the report evaluate_by_interval returns, as plain data, so they draw a report read back
from metrics.json as well as a fresh one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.protocol import interval_label


def verification_table(verification: dict[str, Any]) -> str:
    """Markdown lines: TPR at each FPR, EER (percentages, with thresholds) and the pair counts."""
    lines = ["| verification, all follow-ups | value | threshold |", "|---|---|---|"]
    for fpr, tpr in verification["tpr_at_fpr"].items():
        threshold = _threshold(verification["threshold_at_fpr"][fpr])
        lines.append(f"| TPR at FPR {100 * float(fpr):g}% | {100 * tpr:.2f}% | {threshold} |")
    eer_threshold = _threshold(verification["eer_threshold"])
    lines.append(f"| EER | {100 * verification['eer']:.2f}% | {eer_threshold} |")
    lines.append(f"| genuine pairs | {verification['genuine_pairs']} | |")
    lines.append(f"| impostor pairs | {verification['impostor_pairs']} | |")
    return "\n".join(lines)


def _threshold(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def write_figure(path: str | Path, report: dict[str, Any]) -> None:
    """A PNG with two panels: CMC curves by interval, and the genuine and impostor similarity
    distributions (each as its share of pairs per bin) with the EER threshold marked."""
    # The object-oriented API draws without pyplot's global state or a display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    cmc_axes, score_axes = figure.subplots(1, 2)

    verification = report["verification"]
    for name, interval in report["intervals"].items():
        curve = interval["cmc_curve"]
        style = {"color": "black", "linestyle": "--"} if name == "all" else {}
        ranks = range(1, len(curve) + 1)
        percent = [100 * v for v in curve]
        cmc_axes.plot(ranks, percent, marker=".", label=interval_label(name), **style)
    cmc_axes.set(xlabel="rank", ylabel="CMC (% of queries)", title="Identification by interval")
    cmc_axes.set_xlim(left=1)
    cmc_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    cmc_axes.grid(alpha=0.3)
    cmc_axes.legend(title="since baseline")

    for kind, color in (("genuine", "tab:green"), ("impostor", "tab:red")):
        histogram = verification[f"{kind}_histogram"]
        total = max(1, sum(histogram["counts"]))
        shares = [100 * c / total for c in histogram["counts"]]
        score_axes.stairs(shares, histogram["edges"], fill=True, alpha=0.4, color=color)
        score_axes.stairs(shares, histogram["edges"], color=color, label=f"{kind} pairs")
    eer, threshold = verification["eer"], verification["eer_threshold"]
    score_axes.axvline(
        threshold, color="black", linestyle="--", label=f"EER {100 * eer:.2f}% at {threshold:.3f}"
    )
    score_axes.set(
        xlabel="cosine similarity",
        ylabel="% of pairs per bin",
        title="Verification, all follow-ups",
        xlim=(-1, 1),
    )
    score_axes.legend()
    figure.savefig(path, dpi=110)
