"""``slime-def data``: inspect, import and build embedding datasets."""

from __future__ import annotations

import json

import click

from slime_def.cli import LazyGroup

DATA_COMMANDS = {
    "build": "slime_def.cli.data_build:build",
    "build-default": "slime_def.cli.data_build:build_default",
}


@click.group(cls=LazyGroup, lazy_commands=DATA_COMMANDS)
def data() -> None:
    """Inspect, import and build embedding datasets."""


def _describe(dataset) -> str:
    """Render the contents of a dataset as plain text."""
    from collections import Counter

    manifest = dataset.manifest
    lines = [
        f"dataset      {manifest.get('name') or dataset.origin}",
        f"location     {dataset.origin}",
        f"items        {len(dataset)}",
        f"fingerprint  {dataset.fingerprint}",
    ]
    if manifest.get("licence"):
        lines.append(f"licence      {manifest['licence']}")
    lines.append("spaces")
    for name in dataset.space_names:
        info = manifest.get("spaces", {}).get(name, {})
        lines.append(
            f"  {name:32} {info.get('dim', dataset.spaces[name].shape[1]):>5}-d  "
            f"normalisation={info.get('normalization', '?')}  model={info.get('model', '?')}"
        )
    captions = sum(1 for c in dataset.captions if c)
    tagged = [t for t in dataset.tags if t]
    vocabulary = Counter(tag for item in dataset.tags for tag in item)
    categories = Counter(c for c in dataset.categories if c)
    lines.append(f"captions     {captions} of {len(dataset)} items")
    mean_tags = sum(map(len, tagged)) / max(len(tagged), 1)
    lines.append(f"tags         {len(tagged)} items tagged, {len(vocabulary)} distinct tags, {mean_tags:.1f} per tagged item")
    if vocabulary:
        common = ", ".join(f"{tag} ({count})" for tag, count in vocabulary.most_common(8))
        lines.append(f"  most frequent: {common}")
    lines.append(f"categories   {len(categories)}")
    if categories:
        common = ", ".join(f"{c} ({n})" for c, n in categories.most_common(6))
        lines.append(f"  largest: {common}")
    first = dataset.items[0]
    lines.append(f"example      id={dataset.ids[0]!r} caption={first['caption']!r} tags={first['tags'][:8]}")
    provenance = manifest.get("provenance")
    if isinstance(provenance, dict) and provenance:
        lines.append("provenance")
        for key, value in provenance.items():
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            lines.append(f"  {key}: {text[:160]}")
    return "\n".join(lines)


@data.command("info", epilog="\b\nExamples:\n  slime-def data info default\n"
              "  slime-def data info embeddings.npz --metadata items.jsonl")
@click.argument("path", default="default")
@click.option("--metadata", type=click.Path(dir_okay=False), default=None, metavar="FILE.jsonl",
              help="Per-item metadata (id, caption, tags, category, source) joined by id.")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Plain text, or the manifest plus summary as JSON.")
def info(path, metadata, output_format):
    """Print what an embedding dataset holds: items, spaces, captions, tags.

    PATH is 'default', a dataset folder, or a .npz, .safetensors or .parquet file.
    """
    from slime_def.data.readers import load_dataset

    dataset = load_dataset(path, metadata=metadata)
    if output_format == "json":
        summary = {
            "origin": dataset.origin,
            "n_items": len(dataset),
            "fingerprint": dataset.fingerprint,
            "spaces": {name: dataset.spaces[name].shape[1] for name in dataset.space_names},
            "manifest": dataset.manifest,
        }
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        click.echo(_describe(dataset))


def _parse_space(value: str) -> tuple[str, str]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise click.BadParameter(f"{value!r}: expected NAME=FILE, for example victim/clip=clip.npy",
                                 param_hint="--space")
    return name, path


@data.command("import", epilog="\b\nExample:\n  slime-def data import my_set --space victim/clip=clip.npy "
              "--space attacker/siglip=siglip.npy --metadata items.jsonl")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--space", "spaces", multiple=True, required=True, metavar="NAME=FILE",
              help="A space name and its .npy/.npz/.safetensors file (one (N, d) matrix); repeat per space.")
@click.option("--metadata", type=click.Path(dir_okay=False), default=None, metavar="FILE.jsonl",
              help="Per-item metadata; joined by id when the space files store ids, else line i = row i.")
@click.option("--name", default=None, help="Dataset name for the manifest. Default: the folder name.")
@click.option("--licence", default=None, help="Licence of the embeddings and metadata, e.g. 'CC-BY-4.0'.")
@click.option("--force", is_flag=True, help="Replace a dataset already in OUT.")
def import_command(out, spaces, metadata, name, licence, force):
    """Assemble a dataset folder from one file per space plus JSONL metadata."""
    from pathlib import Path

    from slime_def.data.dataset import MANIFEST, save_dataset
    from slime_def.data.readers import from_files

    if (Path(out) / MANIFEST).exists() and not force:
        raise click.ClickException(f"{out}: a dataset already exists there; pass --force to replace it")
    pairs: dict[str, str] = {}
    for value in spaces:
        space_name, file = _parse_space(value)
        if space_name in pairs:
            raise click.BadParameter(
                f"space {space_name!r} is given twice ({pairs[space_name]} and {file}); "
                "give each space name once", param_hint="--space"
            )
        pairs[space_name] = file
    manifest = {"name": name or Path(out).name}
    if licence:
        manifest["licence"] = licence
    manifest["provenance"] = {"imported_from": {space: str(Path(p).resolve()) for space, p in pairs.items()}}
    dataset = from_files(pairs, metadata=metadata, manifest=manifest)
    save_dataset(dataset, out, overwrite=force)
    click.echo(f"wrote {len(dataset)} items with spaces {', '.join(dataset.space_names)} to {out}")
    for role in ("victim", "attacker"):
        if not dataset.spaces_with_role(role):
            click.echo(
                f"warning: no '{role}/...' space; `slime-def eval` needs one (name spaces like "
                f"{role}/MODEL, or pass --{role}-space NAME to eval)",
                err=True,
            )
    if not any(dataset.tags):
        click.echo("warning: no item has tags; `slime-def eval` needs a 'tags' list per item in --metadata",
                   err=True)
