"""``slime-def report``: a Markdown or HTML summary of a results store."""

from __future__ import annotations

from pathlib import Path

import click

from slime_def.cli.plot import load, summary_options

EPILOG = """\b
Examples:
  slime-def report store.jsonl --out report.md
  slime-def report store.jsonl --out report.md --html report.html --min-utility 0.9
  slime-def report store.jsonl --out report.html --threat defended-pairs
"""

# Utility metrics whose scores lie in [0, 1], so a budget outside that range is a mistake.
BOUNDED_UTILITY = ("knn_overlap", "category_precision")
REPORT_FORMATS = {".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html"}


@click.command("report", epilog=EPILOG)
@summary_options
@click.option("--out", required=True, type=click.Path(dir_okay=False), metavar="REPORT.md|REPORT.html",
              help="Report file; .md or .markdown writes Markdown, .html or .htm writes HTML.")
@click.option("--html", "html_out", type=click.Path(dir_okay=False), default=None, metavar="REPORT.html",
              help="Also write an HTML version here.")
@click.option("--min-utility", type=float, default=0.8, show_default=True,
              help="Utility budget: name the least-leaking setting whose mean utility is at least this.")
@click.option("--figure-format", type=click.Choice(["png", "svg"]), default="png", show_default=True,
              help="Format of the plot written beside the report (same name, this extension).")
@click.option("--force", is_flag=True, help="Overwrite the report and its figure if they exist.")
def report(store, leakage, utility, raw, threat, dataset, group_by, out, html_out, min_utility,
           figure_format, force):
    """Summarise a store: settings table, Pareto frontier and the best setting within a utility budget.

    The table gives mean ± standard deviation over seeds. The plot is written
    beside each report file and linked from it.
    """
    from slime_def.evaluate.plot import UNDEFINED_MESSAGE, plot_summaries, save_figure
    from slime_def.evaluate.report import build_sections, figure_name, render_html, render_markdown
    from slime_def.records import write_atomic

    targets = [(Path(out), _kind(out, "--out"))]
    if html_out is not None:
        targets.append((Path(html_out), _kind(html_out, "--html")))
        if targets[1][1] != "html":
            raise click.BadParameter(f"{html_out} does not end with .html or .htm", param_hint="--html")
    figures = {figure_name(path, f".{figure_format}") for path, _ in targets}
    for path in [path for path, _ in targets] + sorted(figures):
        if path.exists() and not force:
            raise click.UsageError(f"{path} already exists; choose another path or pass --force to overwrite it")

    if not 0.0 <= min_utility <= 1.0 and utility.split("@", 1)[0] in BOUNDED_UTILITY:
        effect = "no setting can meet it" if min_utility > 1 else "every setting meets it"
        click.echo(
            f"warning: --min-utility {min_utility:g} is outside [0, 1], the range of {utility}; {effect}",
            err=True,
        )
    records, summaries = load(store, leakage, utility, raw, threat, dataset, group_by)
    sections = build_sections(summaries, min_utility)
    if all(summary.leakage_undefined for summary in summaries):
        # An empty figure would mislead; the report's notes explain why there is none.
        figures = set()
        click.echo(f"warning: no figure written: {UNDEFINED_MESSAGE}", err=True)
    else:
        figure = plot_summaries(summaries)
        for figure_path in sorted(figures):
            save_figure(figure, figure_path, force=force)
    for path, kind in targets:
        render = render_markdown if kind == "markdown" else render_html
        linked = figure_name(path, f".{figure_format}") if figures else None
        text = render(store, records, summaries, sections, linked.name if linked else None)
        write_atomic(path, text, force=force)
        click.echo(f"{kind} report written to {path}")
    for section in sections:
        if section.budget is not None:
            click.echo(f"{section.title}: {section.budget}")


def _kind(path: str, option: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in REPORT_FORMATS:
        raise click.BadParameter(
            f"unsupported report format {suffix or '(no extension)'!r} for {path}; use .md or .html",
            param_hint=option,
        )
    return REPORT_FORMATS[suffix]
