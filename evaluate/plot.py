"""Leakage-utility plots of summarised sweep records (matplotlib, Agg backend).

One panel per comparison (dataset, threat and run options; see
:mod:`slime_def.evaluate.summary`). In each panel every curve is one defense
(or family), with the mean utility over seeds on x and the mean leakage on y.
The shaded band and error bars show the spread over seeds: a t-based 95%
interval with 3 or more seeds, else min-max. Horizontal lines mark the leakage floor and ceiling, 0 and
1 for normalised leakage, and black rings with a dashed line mark the Pareto
frontier across all defenses of the panel.

Bands and error bars are clipped to the metric's valid range, [0, 1] for
utility and raw leakage scores; normalised leakage has no bounds. The legend
sits below the axes. Point labels that would land within
:data:`LABEL_MIN_DISTANCE` of an earlier label in the panel are left out.

When normalised leakage is undefined for every setting (the undefended
attack's ceiling does not exceed its floor), :func:`plot_summaries` raises
:class:`PlotError` instead of drawing empty panels; a single empty panel among
drawn ones gets a note in its place.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

from slime_def.errors import SlimeDefError
from slime_def.evaluate.summary import ComparisonSummary
from slime_def.records import write_bytes_atomic

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
FRONTIER_LABEL = "Pareto frontier"
# Fraction of the panel's data range (Euclidean, after scaling each axis to [0, 1])
# within which a point's label is dropped because an earlier label is that close.
LABEL_MIN_DISTANCE = 0.04
UNIT_RANGE = (0.0, 1.0)
UNDEFINED_MESSAGE = (
    "normalised leakage is undefined for every setting, because the undefended attack's ceiling "
    "does not exceed its floor; plot raw scores with --raw"
)
# Drop the creation date so the same store gives the same SVG and PDF bytes.
_METADATA = {"svg": {"Date": None}, "pdf": {"CreationDate": None}, "png": {}}


class PlotError(SlimeDefError):
    """A figure that cannot be drawn or written."""


def figure_format(path: str | os.PathLike) -> str:
    """Return ``"png"``, ``"svg"`` or ``"pdf"`` from the file's extension.

    Raises:
      PlotError: any other extension.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise PlotError(
            f"unsupported figure format {suffix or '(no extension)'!r} for {path}; "
            f"end the file name with {', '.join(FORMATS)}"
        )
    return FORMATS[suffix]


def plot_summaries(summaries: list[ComparisonSummary], *, annotate: bool = True):
    """Draw one panel per comparison and return the matplotlib Figure.

    Each curve's line carries the curve label as its matplotlib label. Its data
    are the mean utilities (x) and leakages (y) in the curve's order. The
    frontier line is labelled :data:`FRONTIER_LABEL`.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    if not summaries:
        raise PlotError("nothing to plot: no records left after filtering")
    if not any(_plottable(setting) for summary in summaries for setting in summary.settings):
        if any(summary.leakage_undefined for summary in summaries):
            raise PlotError(f"nothing to plot: {UNDEFINED_MESSAGE}")
        raise PlotError("nothing to plot: no setting has values for both the leakage and the utility metric")
    columns = min(2, len(summaries))
    rows = math.ceil(len(summaries) / columns)
    figure = Figure(figsize=(7.5 * columns, 5.5 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, summary in zip(axes, summaries):
        _draw_panel(ax, summary, annotate)
    for ax in axes[len(summaries):]:
        ax.set_visible(False)
    return figure


def _plottable(setting) -> bool:
    return not (math.isnan(setting.utility.mean) or math.isnan(setting.leakage.mean))


def _draw_panel(ax, summary: ComparisonSummary, annotate: bool) -> None:
    k = summary.comparison.k
    choice = summary.choice
    cycle = [entry["color"] for entry in _colour_cycle()]
    leakage_range = UNIT_RANGE if choice.raw else None
    labels = _LabelPlacer([s for s in summary.settings if _plottable(s)])

    for index, curve in enumerate(summary.curves):
        colour = cycle[index % len(cycle)]
        points = [s for s in curve.settings if _plottable(s)]
        if not points:
            continue
        x = [s.utility.mean for s in points]
        y = [s.leakage.mean for s in points]
        ax.plot(x, y, marker="o", color=colour, label=curve.label, gid=f"curve:{curve.group}")
        ax.errorbar(
            x, y, xerr=_errors((s.utility for s in points), UNIT_RANGE),
            yerr=_errors((s.leakage for s in points), leakage_range),
            fmt="none", ecolor=colour, alpha=0.5, capsize=2,
        )
        if len(points) > 1:
            low = [_clip(s.leakage.low, leakage_range) for s in points]
            high = [_clip(s.leakage.high, leakage_range) for s in points]
            ax.fill_between(x, low, high, color=colour, alpha=0.15, linewidth=0)
        if annotate:
            for setting in points:
                text = _point_text(setting, curve)
                offset = labels.place(setting)
                if text and offset is not None:
                    ax.annotate(text, (setting.utility.mean, setting.leakage.mean),
                                textcoords="offset points", xytext=offset, fontsize=7, color=colour)

    frontier = [s for s in summary.frontier if not math.isnan(s.utility.mean)]
    if frontier:
        ax.plot([s.utility.mean for s in frontier], [s.leakage.mean for s in frontier], linestyle="--",
                color="black", marker="o", markersize=11, markerfacecolor="none", linewidth=1,
                label=FRONTIER_LABEL, gid="frontier", zorder=5)

    floor_label = "floor (0)" if not choice.raw else "floor (random vectors or baseline, mean)"
    ceiling_label = "ceiling (1, no defense)" if not choice.raw else "ceiling (no defense, mean)"
    if not math.isnan(summary.floor.mean):
        ax.axhline(summary.floor.mean, color="grey", linestyle=":", linewidth=1, label=floor_label, gid="floor")
    if not math.isnan(summary.ceiling.mean):
        ax.axhline(summary.ceiling.mean, color="grey", linestyle="-.", linewidth=1, label=ceiling_label,
                   gid="ceiling")
    if not labels.points:
        note = UNDEFINED_MESSAGE if summary.leakage_undefined else "no setting has values for both metrics"
        ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", wrap=True, fontsize=8,
                gid="empty-note")

    ax.set_xlabel(f"utility: {choice.utility_name(k)} (higher keeps more)")
    ax.set_ylabel(choice.leakage_label(k) + " (lower leaks less)")
    ax.set_title(summary.comparison.title(), fontsize=9)
    ax.grid(True, alpha=0.3)
    # Below the axes, so the legend never covers points.
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)


class _LabelPlacer:
    """Chooses label offsets and drops labels too close to an earlier one, in a fixed order."""

    def __init__(self, settings):
        self.points = [(s.utility.mean, s.leakage.mean) for s in settings]
        xs = [x for x, _ in self.points] or [0.0]
        ys = [y for _, y in self.points] or [0.0]
        self._origin = (min(xs), min(ys))
        self._scale = (max(xs) - min(xs) or 1.0, max(ys) - min(ys) or 1.0)
        self._placed: list[tuple[float, float]] = []

    def place(self, setting) -> tuple[int, int] | None:
        """Return the label's offset in points, or None to leave the point unlabelled."""
        x = (setting.utility.mean - self._origin[0]) / self._scale[0]
        y = (setting.leakage.mean - self._origin[1]) / self._scale[1]
        if any(math.hypot(x - px, y - py) < LABEL_MIN_DISTANCE for px, py in self._placed):
            return None
        self._placed.append((x, y))
        # Alternate above and below the point, so labels of neighbours on one curve do not touch.
        return (4, 4) if len(self._placed) % 2 else (4, -10)


def _point_text(setting, curve) -> str:
    if curve.varied:
        return _varied_text(setting.spec, curve.varied)
    if len({s.name for s in curve.settings}) > 1:
        # A family curve mixes mechanisms, so the label names the setting's mechanism.
        return setting.spec
    return ""


def _clip(value: float, bounds: tuple[float, float] | None) -> float:
    if bounds is None or math.isnan(value):
        return value
    return min(max(value, bounds[0]), bounds[1])


def _colour_cycle():
    import matplotlib

    return list(matplotlib.rcParams["axes.prop_cycle"])


def _errors(intervals, bounds: tuple[float, float] | None) -> list[list[float]]:
    """Return matplotlib's [below, above] error lengths, with interval ends clipped to ``bounds``."""
    intervals = list(intervals)
    below = [max(0.0, i.mean - _clip(i.low, bounds)) for i in intervals]
    above = [max(0.0, _clip(i.high, bounds) - i.mean) for i in intervals]
    return [below, above]


def _varied_text(spec: str, varied: list[str]) -> str:
    from slime_def.specs import parse_chain

    params = dict(parse_chain(spec)[0].kwargs)
    parts = []
    for name in varied:
        value = params.get(name)
        parts.append(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}")
    return ", ".join(parts)


def save_figure(figure, path: str | os.PathLike, *, force: bool = False) -> Path:
    """Write the figure atomically in the format its extension names.

    Raises:
      PlotError: unknown extension, the file exists and ``force`` is false, or
        the folder is missing.
    """
    path = Path(path)
    kind = figure_format(path)
    if path.exists() and not force:
        raise PlotError(f"{path} already exists; choose another path or pass --force to overwrite it")
    if not path.parent.exists():
        raise PlotError(f"folder {path.parent} does not exist; create it first")
    buffer = io.BytesIO()
    figure.savefig(buffer, format=kind, dpi=150, metadata=_METADATA[kind])
    write_bytes_atomic(path, buffer.getvalue())
    return path


