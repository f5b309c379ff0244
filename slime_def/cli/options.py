"""Click options shared by `eval` and `sweep`, declared once."""

from __future__ import annotations

import click

from slime_def.evaluate.run import THREATS, EvalConfig

DEFAULTS = EvalConfig()


def dataset_options(func):
    """Add --dataset, --metadata, --victim-space and --attacker-space."""
    options = [
        click.option(
            "--dataset", default="default", show_default=True, metavar="default|PATH",
            help="'default' (shipped Tux Paint stamps set), a dataset folder, or a .npz, "
            ".safetensors or .parquet file.",
        ),
        click.option(
            "--metadata", type=click.Path(dir_okay=False), default=None, metavar="FILE.jsonl",
            help="Per-item metadata (id, caption, tags, category) joined to --dataset by id.",
        ),
        click.option("--victim-space", default=None, metavar="NAME",
                     help="Space attacked and defended. Default: the only 'victim/...' space."),
        click.option("--attacker-space", default=None, metavar="NAME",
                     help="Attacker's own encoder space. Default: the only 'attacker/...' space."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def attack_options(func):
    """Add --retriever, --aligner, --align-pairs, --auxiliary-fraction and --k."""
    options = [
        click.option("--retriever", default=DEFAULTS.retriever, show_default=True, metavar="SPEC",
                     help="Tag retriever: 'knn(neighbours=10)' (faiss voting) or 'mlp' (trained Flax head)."),
        click.option("--aligner", default=DEFAULTS.aligner, show_default=True, metavar="SPEC",
                     help="Alignment fit: 'ridge(l2=0.1)', 'lstsq' or 'procrustes'."),
        click.option("--align-pairs", type=click.IntRange(min=1), default=DEFAULTS.align_pairs,
                     show_default=True, help="Number of alignment pairs (items) the attacker has."),
        click.option("--auxiliary-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True),
                     default=DEFAULTS.auxiliary_fraction, show_default=True,
                     help="Share of the non-alignment items given to the attacker's auxiliary collection."),
        click.option("--k", "k", type=click.IntRange(min=1), default=DEFAULTS.k, show_default=True,
                     help="Cut-off for tag scores, kNN overlap and category precision."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


threat_option = click.option(
    "--threat", type=click.Choice(THREATS), default=DEFAULTS.threat, show_default=True,
    help="clean-pairs: alignment fitted on undefended pairs. defended-pairs: on defended pairs.",
)
