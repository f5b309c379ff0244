"""``slime-def plot``: draw leakage against utility from a results store."""

from __future__ import annotations

import click

from slime_def.evaluate.run import THREATS
from slime_def.evaluate.summary import DEFAULT_LEAKAGE, DEFAULT_UTILITY

EPILOG = """\b
Examples:
  slime-def plot store.jsonl --out tradeoff.png
  slime-def plot store.jsonl --out tradeoff.pdf --threat defended-pairs --raw
  slime-def plot store.jsonl --out recall.svg --leakage recall@1 --utility category_precision@K
"""


def summary_options(func):
    """Add the store argument and the options that choose and filter what is summarised."""
    options = [
        click.argument("store", type=click.Path(dir_okay=False)),
        click.option("--leakage", default=DEFAULT_LEAKAGE, show_default=True, metavar="METRIC",
                     help="Leakage metric on the y axis; '@K' becomes the records' k."),
        click.option("--utility", default=DEFAULT_UTILITY, show_default=True, metavar="METRIC",
                     help="Utility metric on the x axis: knn_overlap@K or category_precision@K."),
        click.option("--raw", is_flag=True,
                     help="Use raw leakage scores instead of normalised (score - floor) / (ceiling - floor)."),
        click.option("--threat", type=click.Choice(THREATS), default=None,
                     help="Keep only records of this threat model. Default: all, one panel each."),
        click.option("--dataset", "dataset", default=None, metavar="FINGERPRINT|NAME",
                     help="Keep only records of the dataset with this fingerprint prefix or name."),
        click.option("--group-by", type=click.Choice(["name", "family"]), default="name", show_default=True,
                     help="One curve per defense name, or per registry family (noise, dp, ...)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def load(store, leakage, utility, raw, threat, dataset, group_by):
    """Read and summarise the store with the options of :func:`summary_options`."""
    from slime_def.evaluate.summary import MetricChoice, load_summaries

    choice = MetricChoice(leakage=leakage, utility=utility, raw=raw)
    return load_summaries(store, choice, threat=threat, dataset=dataset, group_by=group_by)


@click.command("plot", epilog=EPILOG)
@summary_options
@click.option("--out", required=True, type=click.Path(dir_okay=False), metavar="FIGURE",
              help="Figure file; the extension picks the format: .png, .svg or .pdf.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.option("--annotate/--no-annotate", default=True, show_default=True,
              help="Write the swept parameter's value beside each point.")
def plot(store, leakage, utility, raw, threat, dataset, group_by, out, force, annotate):
    """Plot leakage against utility: one curve per defense, the Pareto frontier marked.

    Points are means over seeds. Bands and error bars show the spread over
    seeds: the t-based 95% confidence interval of the mean with 3 or more
    seeds, else the minimum and maximum. Records of different datasets or
    threats go to separate panels.
    """
    from slime_def.evaluate.plot import figure_format, plot_summaries, save_figure

    try:
        figure_format(out)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--out") from None
    _, summaries = load(store, leakage, utility, raw, threat, dataset, group_by)
    figure = plot_summaries(summaries, annotate=annotate)
    save_figure(figure, out, force=force)
    points = sum(len(s.settings) for s in summaries)
    click.echo(f"{points} settings in {len(summaries)} panel(s) plotted to {out}")
