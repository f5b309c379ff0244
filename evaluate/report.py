"""Markdown and HTML reports of a results store.

A report has one section per comparison (dataset, threat and run options).
Each section contains the settings table, the Pareto frontier, and the
least-leaking setting that keeps at least a utility budget. The table gives
mean +- std over seeds of the chosen leakage, its raw score and every utility
metric, with expected and empirical cosine and bytes per vector. The report
ends with the dataset fingerprints, seeds and package versions of the records.
"""

from __future__ import annotations

import dataclasses
import html
import math
from pathlib import Path
from typing import Any

from slime_def.evaluate.summary import ComparisonSummary, Interval, SettingSummary


@dataclasses.dataclass
class Table:
    """A table as header cells and rows of plain-text cells."""

    header: list[str]
    rows: list[list[str]]


@dataclasses.dataclass
class Section:
    """One comparison's part of the report, as plain text that both formats render."""

    title: str
    facts: list[tuple[str, str]]
    table: Table
    frontier: list[str]
    budget: str | None
    notes: list[str] = dataclasses.field(default_factory=list)
    frontier_empty: str = "(no points)"


def format_interval(value: Interval, digits: int = 3) -> str:
    """Return ``mean ± std`` (std over seeds, ddof=1), or ``-`` when no seed has a value."""
    if value.n == 0 or math.isnan(value.mean):
        return "-"
    if value.n == 1:
        return f"{value.mean:.{digits}f}"
    return f"{value.mean:.{digits}f} ± {value.std:.{digits}f}"


def _number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.{digits}f}"
    return str(int(value)) if isinstance(value, (int, float)) else str(value)


def budget_answer(summary: ComparisonSummary, min_utility: float) -> str:
    """State the least-leaking setting with mean utility >= ``min_utility``, or that none meets it."""
    k = summary.comparison.k
    utility = summary.choice.utility_name(k)
    leakage = summary.choice.leakage_name(k)
    kind = "raw" if summary.choice.raw else "normalised"
    if summary.leakage_undefined:
        return (
            f"No budget answer: normalised {leakage} is undefined for every setting, because the undefended "
            "attack's ceiling does not exceed its floor. Rerun the report with --raw to compare raw scores."
        )
    best = summary.best_within_budget(min_utility)
    if best is not None:
        answer = (
            f"Least leakage with mean {utility} >= {min_utility:g}: {best.spec} "
            f"({kind} {leakage} {format_interval(best.leakage)}, {utility} {format_interval(best.utility)})."
        )
        close = _runners_up(summary, best, min_utility)
        if close:
            answer += (
                " Within one standard deviation of its leakage: "
                + "; ".join(f"{s.spec} ({format_interval(s.leakage)}, {utility} {s.utility.mean:.3f})" for s in close)
                + "."
            )
        return answer
    valid = [s for s in summary.settings if not math.isnan(s.utility.mean)]
    if not valid:
        return f"No setting meets the budget {utility} >= {min_utility:g}: no setting has a {utility} value."
    top = max(valid, key=lambda s: s.utility.mean)
    return (
        f"No setting meets the budget {utility} >= {min_utility:g}. "
        f"The highest mean {utility} is {top.utility.mean:.3f} ({top.spec}); lower the budget or add weaker settings."
    )


def _runners_up(summary: ComparisonSummary, best: SettingSummary, min_utility: float) -> list[SettingSummary]:
    """Other settings within the budget whose mean leakage is within one std of the chosen one's."""
    # With one seed the std is 0, so only equal means count as close.
    limit = best.leakage.mean + best.leakage.std
    close = [
        s for s in summary.settings
        if s is not best and s.utility.mean >= min_utility and not math.isnan(s.leakage.mean)
        and s.leakage.mean <= limit
    ]
    return sorted(close, key=lambda s: (s.leakage.mean, -s.utility.mean, s.spec))


def section_notes(summary: ComparisonSummary) -> list[str]:
    """Return warnings about one comparison: undefined or low-headroom leakage, settings with fewer seeds."""
    leakage = summary.choice.leakage_name(summary.comparison.k)
    notes = []
    if summary.leakage_undefined:
        notes.append(
            f"Normalised {leakage} is undefined for every setting, because the undefended attack's ceiling "
            "does not exceed its floor (no headroom, common on tiny datasets). Use --raw to compare raw scores."
        )
    low = summary.low_headroom
    if low:
        notes.append(
            f"Low headroom (ceiling - floor < 0.02) for {leakage} in {len(low)} of {len(summary.settings)} "
            "settings, so their normalised leakage is noisy: "
            + ", ".join(f"{s.spec} ({s.low_headroom_seeds} of {len(s.seeds)} seeds)" for s in low)
            + "."
        )
    max_seeds = max((len(s.seeds) for s in summary.settings), default=0)
    fewer = [s for s in summary.settings if len(s.seeds) < max_seeds]
    if fewer:
        # The store holds only finished runs, so a failed or never-run seed shows as a missing one.
        notes.append(
            f"Settings with fewer than {max_seeds} seeds (failed or not yet run; rerun the sweep to fill them in): "
            + ", ".join(f"{s.spec} (seeds {', '.join(map(str, s.seeds))})" for s in fewer)
            + "."
        )
    return notes


def build_sections(summaries: list[ComparisonSummary], min_utility: float | None) -> list[Section]:
    """Turn summaries into report sections."""
    return [_section(summary, min_utility) for summary in summaries]


def _section(summary: ComparisonSummary, min_utility: float | None) -> Section:
    comparison = summary.comparison
    k = comparison.k
    seeds = sorted({seed for s in summary.settings for seed in s.seeds})
    facts = [
        ("Dataset", f"{comparison.dataset_name or '-'}, fingerprint {comparison.fingerprint}"),
        ("Spaces", f"{comparison.victim_space} (victim) -> {comparison.attacker_space} (attacker)"),
        ("Threat", comparison.threat),
        ("Attack", f"retriever {comparison.retriever}, aligner {comparison.aligner}, "
                   f"{comparison.align_pairs} alignment pairs, k={k}, "
                   f"auxiliary fraction {comparison.auxiliary_fraction:g}"),
        ("Seeds", ", ".join(map(str, seeds))),
    ]
    frontier = [
        f"{s.spec}: {summary.choice.utility_name(k)} {s.utility.mean:.3f}, leakage {s.leakage.mean:.3f}"
        for s in summary.frontier
    ]
    budget = None if min_utility is None else budget_answer(summary, min_utility)
    empty = "(no points)"
    if summary.leakage_undefined:
        empty = "(no points: normalised leakage is undefined because the ceiling does not exceed the floor; use --raw)"
    return Section(comparison.title(), facts, _table(summary), frontier, budget, section_notes(summary), empty)


def _table(summary: ComparisonSummary) -> Table:
    k = summary.comparison.k
    choice = summary.choice
    leakage = choice.leakage_name(k)
    utility_names = sorted(
        {key.split("/", 1)[1] for s in summary.settings for key in s.metrics if key.startswith("utility/")},
        key=lambda name: (name != choice.utility_name(k), name),
    )
    header = [
        "Defense", "Seeds", f"{leakage} ({'raw' if choice.raw else 'normalised'})",
        f"{leakage} ({'normalised' if choice.raw else 'raw'})", *utility_names,
        "Expected cosine", "Empirical cosine", "Bytes/vector", "Frontier",
    ]
    other = "leakage/" if choice.raw else "leakage_raw/"
    missing = Interval(math.nan, math.nan, math.nan, math.nan, 0, "min-max")
    rows = []
    for setting in _table_order(summary.settings):
        rows.append([
            setting.spec,
            str(len(setting.seeds)),
            format_interval(setting.leakage),
            format_interval(setting.metrics.get(other + leakage, missing)),
            *(format_interval(setting.metrics.get(f"utility/{name}", missing)) for name in utility_names),
            _number(setting.expected_cosine),
            format_interval(setting.empirical_cosine),
            _number(setting.bytes_per_vector),
            "yes" if setting.on_frontier else "",
        ])
    return Table(header, rows)


def _table_order(settings: list[SettingSummary]) -> list[SettingSummary]:
    # Group by defense, and within one defense go from most to least utility.
    first_seen = {}
    for setting in settings:
        first_seen.setdefault(setting.name, len(first_seen))
    return sorted(settings, key=lambda s: (first_seen[s.name], -_or_low(s.utility.mean), s.spec))


def _or_low(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def _versions(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    seen: dict[str, set[str]] = {}
    for record in records:
        for name, version in (record.get("versions") or {}).items():
            seen.setdefault(name, set()).add(str(version))
    return [(name, ", ".join(sorted(versions))) for name, versions in sorted(seen.items())]


def _intro(store: str, records: list[dict[str, Any]], summaries: list[ComparisonSummary]) -> list[str]:
    choice = summaries[0].choice
    kind = "raw score" if choice.raw else "normalised leakage, (score - floor) / (ceiling - floor)"
    fingerprints = sorted({s.comparison.fingerprint for s in summaries})
    lines = [
        f"Store: {store}, {len(records)} records, {len(summaries)} comparison(s).",
        f"Leakage: {choice.leakage} as {kind}; lower leaks less. Utility: {choice.utility}; higher keeps more.",
        "Values are mean ± standard deviation over seeds. Interval bands in the plot are t-based 95% "
        "confidence intervals with 3 or more seeds, else min-max.",
    ]
    if len(fingerprints) > 1:
        lines.append(
            f"Warning: the store holds records of {len(fingerprints)} different datasets; "
            "each is reported on its own and their scores are not comparable."
        )
    return lines


def render_markdown(store: str, records: list[dict[str, Any]], summaries: list[ComparisonSummary],
                    sections: list[Section], figure: str | None) -> str:
    """Render the report as Markdown; ``figure`` is the image path relative to the report."""
    out = ["# slime-def sweep report", ""]
    out += [line + "\n" for line in _intro(store, records, summaries)]
    if figure:
        out += [f"![Leakage against utility, one curve per defense]({figure})", ""]
    for section in sections:
        out += [f"## {section.title}", ""]
        out += [f"- {name}: {value}" for name, value in section.facts] + [""]
        out += [f"**Note:** {note}\n" for note in section.notes]
        out += ["### Settings", "", _markdown_table(section.table), ""]
        out += ["### Pareto frontier", ""]
        out += [f"{i}. {line}" for i, line in enumerate(section.frontier, start=1)] or [section.frontier_empty]
        out.append("")
        if section.budget is not None:
            out += ["### Utility budget", "", section.budget, ""]
    out += ["## Provenance", "", _markdown_table(_provenance_table(records)), ""]
    return "\n".join(out)


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown_table(table: Table) -> str:
    lines = ["| " + " | ".join(_markdown_cell(c) for c in table.header) + " |"]
    lines.append("|" + "|".join("---" for _ in table.header) + "|")
    lines += ["| " + " | ".join(_markdown_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def _provenance_table(records: list[dict[str, Any]]) -> Table:
    fingerprints = sorted({r["dataset"]["fingerprint"] for r in records})
    rows = [["dataset fingerprint", fp] for fp in fingerprints]
    rows.append(["seeds", ", ".join(map(str, sorted({r["seed"] for r in records})))])
    created = sorted(r.get("created") for r in records if r.get("created"))
    if created:
        rows.append(["records created", f"{created[0]} to {created[-1]}"])
    rows += [[name, versions] for name, versions in _versions(records)]
    return Table(["Item", "Value"], rows)


def render_html(store: str, records: list[dict[str, Any]], summaries: list[ComparisonSummary],
                sections: list[Section], figure: str | None) -> str:
    """Render the report as a standalone HTML page; ``figure`` is the image path relative to it."""
    esc = html.escape
    out = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        "<title>slime-def sweep report</title>",
        "<style>body{font-family:sans-serif;max-width:75em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:0.2em 0.5em;text-align:left}"
        "img{max-width:100%}</style>",
        "</head>", "<body>", "<h1>slime-def sweep report</h1>",
    ]
    out += [f"<p>{esc(line)}</p>" for line in _intro(store, records, summaries)]
    if figure:
        out.append(f'<p><img src="{esc(figure)}" alt="Leakage against utility, one curve per defense"></p>')
    for section in sections:
        out.append(f"<h2>{esc(section.title)}</h2>")
        out.append("<ul>" + "".join(f"<li>{esc(n)}: {esc(v)}</li>" for n, v in section.facts) + "</ul>")
        out += [f"<p><strong>Note:</strong> {esc(note)}</p>" for note in section.notes]
        out += ["<h3>Settings</h3>", _html_table(section.table), "<h3>Pareto frontier</h3>"]
        if section.frontier:
            out.append("<ol>" + "".join(f"<li>{esc(line)}</li>" for line in section.frontier) + "</ol>")
        else:
            out.append(f"<p>{esc(section.frontier_empty)}</p>")
        if section.budget is not None:
            out += ["<h3>Utility budget</h3>", f"<p>{esc(section.budget)}</p>"]
    out += ["<h2>Provenance</h2>", _html_table(_provenance_table(records)), "</body>", "</html>", ""]
    return "\n".join(out)


def _html_table(table: Table) -> str:
    esc = html.escape
    head = "<tr>" + "".join(f"<th>{esc(c)}</th>" for c in table.header) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    return f"<table>{head}{body}</table>"


def figure_name(report_path: Path, extension: str) -> Path:
    """Return the figure path written beside a report: same folder and stem."""
    return report_path.with_name(report_path.stem + extension)
