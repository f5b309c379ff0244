"""``slime-def sweep``: run defenses over parameter grids and seeds into a JSONL store."""

from __future__ import annotations

import os
import signal

import click

from slime_def.cli.options import attack_options, dataset_options
from slime_def.evaluate.run import THREATS

EPILOG = """\b
Examples:
  slime-def sweep --defense gaussian --grid sigma=0.01,0.02,0.05,0.1 --seeds 0,1,2 --out store.jsonl
  slime-def sweep --defense "gaussian_dp(delta=1e-5)" --grid epsilon=300,1000,3000 \\
      --threat clean-pairs --threat defended-pairs --out store.jsonl
  slime-def sweep --defense quantize --grid bits=8,4,2 --grid ranges=global,per_dim --out q.jsonl
  slime-def sweep --config examples/sweep.toml --workers 2

\b
Rerunning the same command skips the settings already in the store, so an
interrupted sweep resumes where it stopped. Ctrl-C stops the workers at once,
keeps every stored record and exits with status 130; a second Ctrl-C exits
without any cleanup.
"""

# Options that a --config file sets; giving them on the command line as well is an error.
CONFIG_OWNED = (
    "defense", "grid", "seeds", "threat", "dataset", "metadata", "victim_space", "attacker_space",
    "retriever", "aligner", "align_pairs", "auxiliary_fraction", "k",
)


@click.command("sweep", epilog=EPILOG)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, metavar="FILE.toml",
              help="Sweep definition: defenses with grids, seeds, threats and run options (TOML).")
@click.option("--defense", "defenses", multiple=True, metavar="SPEC",
              help="Defense name or spec with fixed parameters, e.g. 'gaussian_dp(delta=1e-5)'. Repeatable.")
@click.option("--grid", "grids", multiple=True, metavar="PARAM=V1,V2,...",
              help="Values of one parameter, applied to every --defense. Repeat for a Cartesian product.")
@click.option("--seeds", default="0", show_default=True, metavar="LIST",
              help="Seeds, e.g. '0,1,2' or '0-4' (inclusive).")
@click.option("--threat", "threats", type=click.Choice(THREATS), multiple=True,
              help="Threat model; repeat for several. Default: clean-pairs.")
@dataset_options
@attack_options
@click.option("--out", default=None, type=click.Path(dir_okay=False), metavar="STORE.jsonl",
              help="Results store; created if missing, appended to otherwise.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes (1 runs in this process). Default: the config's, else min(2, CPU count).")
@click.option("--dry-run", is_flag=True, help="List the settings and how many are already stored; run nothing.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Show a progress bar with points done and time left.")
@click.pass_context
def sweep(ctx, config_path, defenses, grids, seeds, threats, dataset, metadata, victim_space, attacker_space,
          retriever, aligner, align_pairs, auxiliary_fraction, k, out, workers, dry_run, progress):
    """Evaluate defense settings over seeds and threats, appending one record per run to a store.

    Each record is the full `slime-def eval --format json` record of one
    (defense setting, threat, seed). Settings already in the store, with the
    same dataset fingerprint and attack options, are skipped.
    """
    from slime_def.data.readers import load_dataset
    from slime_def.evaluate.grid import config_from_options, load_config
    from slime_def.evaluate.store import ResultStore
    from slime_def.evaluate.sweep import SweepInterrupted, plan_sweep, run_sweep

    if config_path is not None:
        given = [name for name in CONFIG_OWNED
                 if ctx.get_parameter_source(_param(name)) is not click.core.ParameterSource.DEFAULT]
        if given:
            raise click.UsageError(
                f"--{given[0].replace('_', '-')} is set by --config; change it in {config_path} instead"
            )
        config = load_config(config_path)
    else:
        config = config_from_options(
            defenses, grids, seeds, threats or ("clean-pairs",), dataset=dataset, metadata=metadata,
            victim_space=victim_space, attacker_space=attacker_space, retriever=retriever, aligner=aligner,
            align_pairs=align_pairs, auxiliary_fraction=auxiliary_fraction, k=k,
        )
    out = out or config.out
    if out is None:
        raise click.UsageError("no results store given: pass --out STORE.jsonl (or set out in the config)")

    data = load_dataset(config.dataset, metadata=config.metadata)
    if dry_run:
        plan = plan_sweep(config, data, ResultStore(out))
        pending = {point.key for point in plan.pending}
        for point in plan.points:
            state = "pending" if point.key in pending else "stored "
            click.echo(f"{state}  seed {point.seed}  {point.threat:15} {point.spec}")
        click.echo(f"{len(plan.points)} settings: {plan.done} stored in {out}, {len(plan.pending)} to run")
        return

    try:
        result = run_sweep(config, out, dataset=data, workers=workers, progress=progress)
    except SweepInterrupted as stop:
        # From here on a further Ctrl-C ends the process at once, so nothing at
        # interpreter exit (the executor's thread join) can be interrupted half-way.
        signal.signal(signal.SIGINT, lambda signum, frame: os._exit(130))
        click.echo(
            f"interrupted: stored {stop.stored} of {stop.total} settings in {out}; "
            "rerun the same command to resume",
            err=True,
        )
        ctx.exit(130)
    click.echo(
        f"{result.total} settings: {result.skipped} already stored, {result.completed} run now, "
        f"{len(result.failed)} failed; {result.seconds:.1f} s; store {out}"
    )
    if result.failed:
        for spec, threat, seed, message in result.failed:
            click.echo(f"failed: {spec}, {threat}, seed {seed}: {message}", err=True)
        raise click.ClickException(
            f"{len(result.failed)} settings failed and were not stored; fix the cause and rerun to retry them"
        )


def _param(name: str) -> str:
    # Click names the parameter after the function argument, not the option.
    return {"defense": "defenses", "grid": "grids", "threat": "threats"}.get(name, name)
