"""Sweep definitions: defenses with parameter grids, seeds, threats and run options.

A sweep comes from command-line options (:func:`config_from_options`) or a
TOML file (:func:`load_config`). Both give a :class:`SweepConfig`, whose
points are every (defense spec, threat, seed) of the Cartesian product of
each defense's grid with the seeds and threats. Every spec is built once with
:func:`~slime_def.defenses.make_defense` while parsing, so an unknown defense,
unknown parameter or out-of-range value fails before any work starts.

The TOML format (all keys but ``[[defense]]`` optional)::

    dataset = "default"          # or a path, relative to the TOML file's folder
    seeds = [0, 1, 2]
    threats = ["clean-pairs", "defended-pairs"]
    retriever = "knn"
    aligner = "ridge"
    align_pairs = 200
    k = 5

    [[defense]]
    spec = "gaussian"
    grid = { sigma = [0.01, 0.02, 0.05, 0.1] }

    [[defense]]
    spec = "gaussian_dp(delta=1e-5)"     # fixed parameters stay in the spec
    grid = { epsilon = [300.0, 1000.0, 3000.0] }
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import os
import tomllib
from pathlib import Path
from typing import Any, Iterable

from slime_def.errors import SlimeDefError, SpecError
from slime_def.specs import Spec, format_spec, parse_chain

RUN_OPTIONS = (
    "dataset", "metadata", "victim_space", "attacker_space", "retriever", "aligner",
    "align_pairs", "auxiliary_fraction", "k",
)
CONFIG_KEYS = ("defense", "seeds", "threats", "workers", "out", *RUN_OPTIONS)
DEFENSE_KEYS = ("spec", "grid")


class ConfigError(SlimeDefError):
    """An invalid sweep definition; the message names the value and the fix."""


@dataclasses.dataclass(frozen=True)
class DefenseGrid:
    """One defense with fixed parameters and a grid over others.

    Attributes:
      base: canonical spec holding the fixed parameters, e.g. ``"gaussian_dp(delta=1e-05)"``.
      grid: (parameter, values) pairs; the specs are their Cartesian product.
    """

    base: str
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def specs(self) -> list[str]:
        """Return the canonical spec of every grid setting, fixed parameters first."""
        if not self.grid:
            return [self.base]
        (base,) = parse_chain(self.base)
        names = [name for name, _ in self.grid]
        specs = []
        for values in itertools.product(*(values for _, values in self.grid)):
            specs.append(format_spec(Spec(base.name, base.kwargs + tuple(zip(names, values)))))
        return specs


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """A whole sweep: defenses with grids, seeds, threats and the run options.

    The run options mean what they mean in :class:`~slime_def.evaluate.run.EvalConfig`.
    ``workers`` and ``out`` are only defaults for the command line.
    """

    defenses: tuple[DefenseGrid, ...]
    seeds: tuple[int, ...] = (0,)
    threats: tuple[str, ...] = ("clean-pairs",)
    dataset: str = "default"
    metadata: str | None = None
    victim_space: str | None = None
    attacker_space: str | None = None
    retriever: str = "knn"
    aligner: str = "ridge"
    align_pairs: int = 200
    auxiliary_fraction: float = 0.5
    k: int = 5
    workers: int | None = None
    out: str | None = None

    def specs(self) -> list[str]:
        """Return every defense setting once, in definition order."""
        return list(dict.fromkeys(spec for grid in self.defenses for spec in grid.specs()))

    def points(self) -> list[tuple[str, str, int]]:
        """Return every (spec, threat, seed), seed-major so one preparation serves many points."""
        return [(spec, threat, seed) for seed in self.seeds for threat in self.threats for spec in self.specs()]

    def eval_config(self, seed: int, defense: str = "none", threat: str | None = None):
        """Return the :class:`~slime_def.evaluate.run.EvalConfig` of one point."""
        from slime_def.evaluate.run import EvalConfig

        return EvalConfig(
            defense=defense, threat=threat or self.threats[0], retriever=self.retriever,
            aligner=self.aligner, align_pairs=self.align_pairs,
            auxiliary_fraction=self.auxiliary_fraction, k=self.k, seed=seed,
            victim_space=self.victim_space, attacker_space=self.attacker_space,
        )


def parse_grid_option(text: str) -> tuple[str, list[Any]]:
    """Parse ``"sigma=0.01,0.02,0.05"`` into ``("sigma", [0.01, 0.02, 0.05])``.

    Values are Python literals (numbers, ``True``, ``False``, ``None``, quoted
    strings). A bare word is kept as a string, and the defense's own check
    rejects it where a number is expected; see :func:`expand_grid`.

    Raises:
      ConfigError: no ``=``, an invalid parameter name, or no values.
    """
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ConfigError(f"invalid grid {text!r}: expected PARAM=V1,V2,..., for example sigma=0.01,0.02")
    if not name.isidentifier():
        raise ConfigError(f"invalid grid parameter {name!r} in {text!r}: use the defense's parameter name")
    items = [item.strip() for item in values.split(",")]
    if not any(items):
        raise ConfigError(f"empty grid for {name!r}: give at least one value, for example {name}=0.01,0.02")
    if not all(items):
        raise ConfigError(f"empty value in grid {text!r}: separate values with single commas")
    return name, [_parse_value(item) for item in items]


def _parse_value(item: str) -> Any:
    try:
        return ast.literal_eval(item)
    except (ValueError, SyntaxError):
        return item


def parse_seeds(text: str | Iterable[int]) -> tuple[int, ...]:
    """Parse ``"0,1,2"`` or ``"0-4"`` (inclusive) into distinct non-negative seeds, in order.

    Raises:
      ConfigError: an item that is not a non-negative integer or range, or no seeds.
    """
    if not isinstance(text, str):
        return _check_seed_list(text)
    seeds: list[int] = []
    for item in text.split(","):
        item = item.strip()
        low, dash, high = item.partition("-")
        if dash and low.isdigit() and high.isdigit() and int(low) <= int(high):
            seeds.extend(range(int(low), int(high) + 1))
        elif item.isdigit():
            seeds.append(int(item))
        else:
            raise ConfigError(
                f"invalid seed {item!r} in {text!r}: seeds are non-negative integers, "
                "for example 0,1,2 or 0-4"
            )
    return tuple(dict.fromkeys(seeds))


def _check_seed_list(values: Iterable[Any]) -> tuple[int, ...]:
    seeds = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"invalid seed {value!r}: seeds are non-negative integers, for example [0, 1, 2]")
        seeds.append(value)
    if not seeds:
        raise ConfigError("empty seed list: give at least one seed, for example [0, 1, 2]")
    return tuple(dict.fromkeys(seeds))


def parse_threats(values: Iterable[str]) -> tuple[str, ...]:
    """Check threat names and return them once each, in order."""
    from slime_def.evaluate.run import THREATS

    threats = []
    for value in values:
        if value not in THREATS:
            raise ConfigError(f"unknown threat {value!r}; choose from: {', '.join(THREATS)}")
        threats.append(value)
    if not threats:
        raise ConfigError(f"empty threat list: give at least one of {', '.join(THREATS)}")
    return tuple(dict.fromkeys(threats))


def expand_grid(spec: str, grid: Iterable[tuple[str, Iterable[Any]]] = ()) -> DefenseGrid:
    """Check a defense spec and its grid, and build every setting once to validate it.

    Args:
      spec: a defense name or spec with fixed parameters, e.g. ``"gaussian_dp(delta=1e-5)"``;
        a chain such as ``"quantize(bits=4)|pca(dim=64)"`` is allowed without a grid.
      grid: (parameter, values) pairs, e.g. ``[("epsilon", [100.0, 1000.0])]``.

    Raises:
      ConfigError: unknown defense or parameter, a parameter both fixed and
        gridded or gridded twice, an empty grid, or a setting the defense rejects.
    """
    from slime_def.defenses import make_defense
    from slime_def.defenses.base import DEFENSES, available_defenses

    grid = [(name, tuple(values)) for name, values in grid]
    try:
        parts = parse_chain(spec)
    except SpecError as exc:
        raise ConfigError(str(exc)) from None
    available_defenses()
    for part in parts:
        if part.name not in DEFENSES:
            known = ", ".join(DEFENSES.names())
            raise ConfigError(f"unknown defense {part.name!r}; known defenses: {known}")

    if grid and len(parts) > 1:
        raise ConfigError(
            f"a grid varies one defense, but {spec!r} is a chain; list each chain setting "
            "as its own spec instead"
        )
    if grid:
        _check_grid_names(parts[0], grid)

    result = DefenseGrid(format_spec(parts), tuple(grid))
    for setting in result.specs():
        try:
            make_defense(setting)
        except SlimeDefError as exc:
            raise ConfigError(f"invalid setting {setting!r}: {exc}") from None
    return result


def _check_grid_names(base: Spec, grid: list[tuple[str, tuple[Any, ...]]]) -> None:
    from slime_def.defenses.base import DEFENSES

    factory = DEFENSES.get(base.name)
    accepted = [
        name for name, param in inspect.signature(factory).parameters.items()
        if param.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    seen = set()
    for name, values in grid:
        if name not in accepted:
            raise ConfigError(
                f"unknown parameter {name!r} for defense {base.name!r}; valid: {', '.join(accepted) or '(none)'}"
            )
        if name in base.params:
            raise ConfigError(
                f"parameter {name!r} is both fixed in {format_spec(base)!r} and gridded; remove one"
            )
        if name in seen:
            raise ConfigError(f"parameter {name!r} is gridded twice; give all its values in one grid")
        if not values:
            raise ConfigError(f"empty grid for {name!r}: give at least one value, for example {name}=[0.01, 0.02]")
        seen.add(name)


def config_from_options(
    defenses: Iterable[str], grids: Iterable[str], seeds: str, threats: Iterable[str], **run_options,
) -> SweepConfig:
    """Build a sweep from command-line values: every ``--grid`` applies to every ``--defense``.

    Raises:
      ConfigError: no defense, or any value that :func:`expand_grid`,
        :func:`parse_grid_option`, :func:`parse_seeds` or :func:`parse_threats` rejects.
    """
    defenses = list(defenses)
    if not defenses:
        raise ConfigError("no defense given: pass --defense NAME (with --grid PARAM=V1,V2) or --config FILE")
    grid = [parse_grid_option(text) for text in grids]
    expanded = tuple(expand_grid(spec, grid) for spec in defenses)
    return SweepConfig(
        defenses=expanded, seeds=parse_seeds(seeds), threats=parse_threats(threats), **run_options,
    )


def load_config(path: str | os.PathLike) -> SweepConfig:
    """Read a sweep from a TOML file (format in the module docstring).

    Relative ``dataset``, ``metadata`` and ``out`` paths are taken from the
    file's folder, so a config and its data can move together.

    Raises:
      ConfigError: the file is missing or not valid TOML, or a value is invalid;
        the message names the file and the value.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep config {path} not found; check the path given to --config")
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc}); see examples/sweep.toml for the format") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save the sweep config as UTF-8") from None
    try:
        return _config_from_table(table, path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _config_from_table(table: dict[str, Any], folder: Path) -> SweepConfig:
    unknown = sorted(set(table) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r}; valid keys: {', '.join(CONFIG_KEYS)}")
    entries = table.get("defense")
    if not isinstance(entries, list) or not entries:
        raise ConfigError("no [[defense]] table: add one per defense, with spec = \"NAME\" and an optional grid")

    defenses = tuple(_defense_from_table(entry, number) for number, entry in enumerate(entries, start=1))
    seeds = table.get("seeds", [0])
    if not isinstance(seeds, list):
        raise ConfigError(f"invalid seeds {seeds!r}: expected a list of non-negative integers, e.g. [0, 1, 2]")
    threats = table.get("threats", ["clean-pairs"])
    if isinstance(threats, str):
        threats = [threats]
    if not isinstance(threats, list):
        raise ConfigError(f"invalid threats {threats!r}: expected a list such as [\"clean-pairs\"]")

    options = {name: table[name] for name in RUN_OPTIONS if name in table}
    for name in ("dataset", "metadata"):
        if name in options:
            options[name] = _resolve(options[name], folder, name)
    _check_run_options(options)
    workers = table.get("workers")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"invalid workers {workers!r}: expected a positive integer")
    out = _resolve(table["out"], folder, "out") if "out" in table else None
    return SweepConfig(
        defenses=defenses, seeds=_check_seed_list(seeds), threats=parse_threats(threats),
        workers=workers, out=out, **options,
    )


def _defense_from_table(entry: Any, number: int) -> DefenseGrid:
    where = f"[[defense]] number {number}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a table with spec = \"NAME\" and an optional grid")
    unknown = sorted(set(entry) - set(DEFENSE_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(DEFENSE_KEYS)}")
    spec = entry.get("spec")
    if not isinstance(spec, str):
        raise ConfigError(f"{where}: missing spec; add spec = \"gaussian\" or another defense spec")
    grid = entry.get("grid", {})
    if not isinstance(grid, dict):
        raise ConfigError(f"{where}: grid must be a table such as grid = {{ sigma = [0.01, 0.02] }}")
    pairs = []
    for name, values in grid.items():
        if not isinstance(values, list):
            values = [values]
        pairs.append((name, values))
    try:
        return expand_grid(spec, pairs)
    except ConfigError as exc:
        raise ConfigError(f"{where} ({spec}): {exc}") from None


def _resolve(value: Any, folder: Path, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"invalid {name} {value!r}: expected a path string")
    if name == "dataset" and value == "default":
        return value
    candidate = Path(value).expanduser()
    return str(candidate if candidate.is_absolute() else folder / candidate)


def _check_run_options(options: dict[str, Any]) -> None:
    for name in ("align_pairs", "k"):
        value = options.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"invalid {name} {value!r}: expected a positive integer")
    fraction = options.get("auxiliary_fraction")
    if fraction is not None and (
        isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1
    ):
        raise ConfigError(f"invalid auxiliary_fraction {fraction!r}: expected a number in (0, 1)")
    if "auxiliary_fraction" in options:
        options["auxiliary_fraction"] = float(options["auxiliary_fraction"])
    for name in ("retriever", "aligner", "victim_space", "attacker_space"):
        value = options.get(name)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"invalid {name} {value!r}: expected a string")
