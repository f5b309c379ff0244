"""``slime-def eval``: run SLImE against one defense and print leakage and utility."""

from __future__ import annotations

import json

import click

from slime_def.cli.options import attack_options, dataset_options, threat_option

HEADLINE = (
    ("tag_micro_f1@{k}", "tag micro F1@{k}"),
    ("tag_macro_f1@{k}", "tag macro F1@{k}"),
    ("tag_samples_f1@{k}", "tag per-item F1@{k}"),
    ("recall@1", "recall@1 of true item"),
    ("recall@10", "recall@10 of true item"),
    ("knn_overlap@{k}", "kNN overlap@{k}"),
    ("cosine", "mean cosine"),
)

EPILOG = """\b
Examples:
  slime-def eval --defense gaussian
  slime-def eval --defense "gaussian(cosine=0.8)" --threat defended-pairs --seed 1
  slime-def eval --defense "quantize(bits=4)|random_projection(dim=256)" --out run.json
  slime-def eval --defense "pca(dim=64)" --predictions recovered.jsonl --examples 10
  slime-def eval --dataset my.npz --metadata items.jsonl --defense none --format json
"""


def _fmt(value, width=8, digits=3) -> str:
    if value is None:
        return "-".rjust(width)
    return f"{value:{width}.{digits}f}"


def format_table(record: dict) -> str:
    """Render a record as the readable table `eval` prints by default."""
    k = record["k"]
    data = record["dataset"]
    props = record["defense_properties"]
    sizes = record["split"]
    lines = [
        f"defense   {record['defense_resolved']}",
        f"threat    {record['threat']}    retriever {record['retriever']}    aligner {record['aligner']}"
        f"    seed {record['seed']}",
        f"dataset   {data['name'] or data['origin']}  {data['n_items']} items  {data['fingerprint'][:19]}...",
        f"spaces    {data['victim_space']} ({data['victim_dim']}-d) -> {data['attacker_space']} ({data['attacker_dim']}-d)",
        f"split     {sizes['align']} alignment pairs, {sizes['auxiliary']} auxiliary, {sizes['targets']} targets",
        "defense   expected cosine {}   empirical cosine {}   output dim {}   bytes/vector {}".format(
            _fmt(props.get("expected_cosine"), 0), _fmt(props.get("empirical_cosine"), 0),
            props.get("output_dim"), props.get("bytes_per_vector"),
        ),
    ]

    if record.get("attacker_note"):
        lines.append(f"note      attacker {record['attacker_note']}")
    for role in ("victim", "attacker"):
        norm = data.get(f"{role}_median_norm")
        if norm is not None and abs(norm - 1.0) > 1e-3:
            lines.append(f"note      {role} vectors are not unit-norm (median norm {norm:.3g}); "
                         "eval L2-normalises them first")
    low_headroom = False
    lines += ["", f"{'Leakage (higher = more leaked)':34}{'score':>8}{'floor':>8}{'ceiling':>8}{'normalised':>11}"]
    for key, label in HEADLINE:
        entry = record["leakage"].get(key.format(k=k))
        if entry is None:
            continue
        flag = " !" if entry.get("low_headroom") else ""
        lines.append(
            f"  {label.format(k=k):32}{_fmt(entry['score'])}{_fmt(entry['floor'])}"
            f"{_fmt(entry['ceiling'])}{_fmt(entry['normalised'], 11, 2)}{flag}"
        )
        low_headroom = low_headroom or bool(flag)

    lines += ["", f"{'Utility (defended targets)':34}{'score':>8}{'clean':>8}"]
    for key, entry in record["utility"].items():
        lines.append(f"  {key:32}{_fmt(entry['score'])}{_fmt(entry['clean'])}")

    lines += [
        "",
        "floor = max(attacker given random vectors, mean-vector or most-frequent-tags baseline);",
        "ceiling = no defense; normalised = (score - floor) / (ceiling - floor).",
    ]
    if low_headroom:
        lines.append(
            "! the ceiling is within 0.02 of the floor: even undefended, the attack barely beats its "
            "baseline on this metric, so the normalised value is unreliable ('-' when there is no headroom)."
        )
    return "\n".join(lines)


def format_examples(rows: list[dict]) -> str:
    """Render a few targets with their true tags and the attacker's recovered tags."""
    lines = ["Examples (true tags -> tags the attacker recovered, with scores)"]
    for row in rows:
        recovered = ", ".join(f"{tag} {score:.2f}" for tag, score in row["recovered_tags"])
        lines.append(f"  {row['id']}: {row['caption']!r}")
        lines.append(f"    true: {', '.join(row['true_tags'])}")
        lines.append(f"    recovered: {recovered}")
    return "\n".join(lines)


@click.command("eval", epilog=EPILOG)
@click.option("--defense", default="none", show_default=True, metavar="SPEC",
              help="Defense spec, e.g. 'gaussian(sigma=0.05)' or 'quantize(bits=4)|pca(dim=128)'. "
              "List them with `slime-def defenses`.")
@dataset_options
@threat_option
@attack_options
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seeds the split, the defense's PRNG key and retriever training.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, metavar="FILE.json",
              help="Write the full JSON record here (atomically).")
@click.option("--force", is_flag=True, help="Overwrite --out and --predictions if they exist.")
@click.option("--predictions", type=click.Path(dir_okay=False), default=None, metavar="FILE.jsonl",
              help="Write each target's true tags and recovered tags with scores, one JSON line per target.")
@click.option("--examples", type=click.IntRange(min=0), default=3, show_default=True,
              help="Targets shown in the table with their true and recovered tags.")
@click.option("--format", "output_format", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="What to print on standard output.")
def eval_command(defense, dataset, metadata, victim_space, attacker_space, threat, retriever, aligner,
                 align_pairs, auxiliary_fraction, k, seed, out, force, predictions, examples, output_format):
    """Attack the defended victim vectors with SLImE; report leakage and utility.

    Leakage (tag recovery, true-item recall, neighbourhood overlap) is shown
    with its floor, ceiling and normalised value; utility is measured on the
    same defended vectors.
    """
    from pathlib import Path

    from slime_def.data.readers import load_dataset
    from slime_def.defenses import make_defense
    from slime_def.evaluate.run import EvalConfig, evaluate
    from slime_def.records import to_json, write_atomic

    for option, path in (("--out", out), ("--predictions", predictions)):
        if path is not None and Path(path).exists() and not force:
            raise click.BadParameter(f"{path} already exists; choose another path or pass --force",
                                     param_hint=option)
        if path is not None and not Path(path).resolve().parent.is_dir():
            raise click.BadParameter(f"folder {Path(path).parent} does not exist; create it first",
                                     param_hint=option)
    config = EvalConfig(
        defense=defense, threat=threat, retriever=retriever, aligner=aligner, align_pairs=align_pairs,
        auxiliary_fraction=auxiliary_fraction, k=k, seed=seed, victim_space=victim_space,
        attacker_space=attacker_space,
    )
    config.validate()
    make_defense(defense)
    data = load_dataset(dataset, metadata=metadata)
    record = evaluate(config, data, keep_predictions=True)
    recovered = record.pop("predictions")
    record["dataset"]["source"] = dataset
    text = to_json(record)
    if out is not None:
        write_atomic(out, text + "\n", force=force)
    if predictions is not None:
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in recovered)
        write_atomic(predictions, lines, force=force)
    if output_format == "json":
        click.echo(text)
        return
    click.echo(format_table(json.loads(text)))
    if examples:
        step = max(1, len(recovered) // examples)  # spread the examples over the targets
        click.echo("\n" + format_examples(recovered[::step][:examples]))
    for label, path in (("record", out), ("predictions", predictions)):
        if path is not None:
            click.echo(f"{label} written to {path}")
