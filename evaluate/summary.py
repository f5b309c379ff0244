"""Summaries of a results store: per-setting means over seeds, curves and the frontier.

Records are first split into comparisons: records that share the dataset
fingerprint, threat, spaces, retriever, aligner, align_pairs, k and
auxiliary_fraction, because scores from different datasets or threat models are
not comparable. Within a comparison, the seeds of one defense setting are
averaged into a :class:`SettingSummary`, and settings are joined into curves by
defense name (or registry family).

Spread over seeds: with 3 or more seeds the interval is the t-based 95%
confidence interval of the mean, ``mean +- t(0.975, n-1) * std / sqrt(n)``;
with 1 or 2 seeds a t-interval is uninformative (t(0.975, 1) is 12.7), so the
interval is the minimum and maximum instead.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Iterable

import numpy as np

from slime_def.errors import SlimeDefError
from slime_def.evaluate.frontier import pareto_mask
from slime_def.evaluate.store import key_spec
from slime_def.specs import Spec, format_spec, parse_chain

logger = logging.getLogger(__name__)

DEFAULT_LEAKAGE = "tag_micro_f1@K"
DEFAULT_UTILITY = "knn_overlap@K"
MIN_SEEDS_FOR_T_INTERVAL = 3


class SummaryError(SlimeDefError):
    """A summary request that the records cannot serve, such as an unknown metric."""


@dataclasses.dataclass(frozen=True)
class Interval:
    """Mean of one metric over seeds with its spread (see the module docstring).

    Attributes:
      mean, std: over the seeds with a value (``std`` with ddof=1; 0 for one seed).
      low, high: the interval's ends.
      n: seeds with a value.
      kind: ``"t95"`` or ``"min-max"``.
    """

    mean: float
    std: float
    low: float
    high: float
    n: int
    kind: str


def interval(values: Iterable[float | None]) -> Interval:
    """Summarise values over seeds, ignoring ``None`` and NaN; all missing gives NaN."""
    from scipy import stats

    data = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    n = int(data.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, math.nan, 0, "min-max")
    mean = float(data.mean())
    std = float(data.std(ddof=1)) if n > 1 else 0.0
    if n >= MIN_SEEDS_FOR_T_INTERVAL:
        half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
        return Interval(mean, std, mean - half, mean + half, n, "t95")
    return Interval(mean, std, float(data.min()), float(data.max()), n, "min-max")


@dataclasses.dataclass(frozen=True)
class MetricChoice:
    """The leakage and utility metrics a summary reads.

    Attributes:
      leakage: leakage metric; ``@K`` is replaced by each record's k.
      utility: utility metric; ``@K`` likewise.
      raw: read the raw leakage score instead of the normalised one.
    """

    leakage: str = DEFAULT_LEAKAGE
    utility: str = DEFAULT_UTILITY
    raw: bool = False

    def leakage_name(self, k: int) -> str:
        return self.leakage.replace("@K", f"@{k}")

    def utility_name(self, k: int) -> str:
        return self.utility.replace("@K", f"@{k}")

    def leakage_label(self, k: int) -> str:
        kind = "raw score" if self.raw else "normalised"
        return f"leakage: {self.leakage_name(k)} ({kind})"


def leakage_value(record: dict[str, Any], choice: MetricChoice) -> float | None:
    """Return the chosen leakage number of a record.

    Raises:
      SummaryError: the record has no such metric (the message lists those it has).
    """
    name = choice.leakage_name(record["k"])
    entry = record.get("leakage", {}).get(name)
    if entry is None:
        known = ", ".join(record.get("leakage", {})) or "(none)"
        raise SummaryError(f"unknown leakage metric {name!r}; the records have: {known}")
    return entry.get("score" if choice.raw else "normalised")


def utility_value(record: dict[str, Any], choice: MetricChoice) -> float | None:
    """Return the chosen utility score of a record.

    Raises:
      SummaryError: the record has no such metric (the message lists those it has).
    """
    name = choice.utility_name(record["k"])
    entry = record.get("utility", {}).get(name)
    if entry is None:
        known = ", ".join(record.get("utility", {})) or "(none)"
        raise SummaryError(f"unknown utility metric {name!r}; the records have: {known}")
    return entry.get("score")


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The dataset, threat and run options that records must share to be compared."""

    fingerprint: str
    dataset_name: str | None
    threat: str
    victim_space: str | None
    attacker_space: str | None
    retriever: str
    aligner: str
    align_pairs: int
    k: int
    auxiliary_fraction: float

    @classmethod
    def of(cls, record: dict[str, Any]) -> "Comparison":
        data = record["dataset"]
        return cls(
            data["fingerprint"], data.get("name"), record["threat"], data.get("victim_space"),
            data.get("attacker_space"), record["retriever"], record["aligner"],
            int(record["align_pairs"]), int(record["k"]), float(record["auxiliary_fraction"]),
        )

    def title(self) -> str:
        """Return a one-line description for plot titles and report headings."""
        name = self.dataset_name or "dataset"
        return (
            f"{name} {self.fingerprint[:15]}, {self.threat}, {self.align_pairs} pairs, "
            f"{self.retriever}, {self.aligner}, k={self.k}"
        )


@dataclasses.dataclass
class SettingSummary:
    """One defense setting in one comparison, averaged over seeds.

    Attributes:
      spec: the defense spec as the first record wrote it.
      name: the component names, e.g. ``"gaussian"`` or ``"quantize|pca"``.
      family: the registry family, or the name when the defense is not registered.
      seeds: seeds with a record.
      leakage, utility: the chosen metrics over seeds.
      metrics: every leakage (normalised and raw) and utility metric over seeds,
        keyed ``"leakage/NAME"``, ``"leakage_raw/NAME"`` and ``"utility/NAME"``.
      expected_cosine, bytes_per_vector, output_dim: from the records (equal across seeds).
      empirical_cosine: mean cosine between defended and clean targets over seeds.
      on_frontier: set by :func:`summarise`.
      missing_seeds: seeds without a value for the chosen leakage or utility.
      low_headroom_seeds: seeds whose record flags the chosen leakage metric as
        low headroom (ceiling - floor < 0.02), so its normalised value is noisy.
    """

    spec: str
    name: str
    family: str
    seeds: list[int]
    leakage: Interval
    utility: Interval
    metrics: dict[str, Interval]
    expected_cosine: float | None
    empirical_cosine: Interval
    bytes_per_vector: float | None
    output_dim: int | None
    on_frontier: bool = False
    missing_seeds: int = 0
    low_headroom_seeds: int = 0


@dataclasses.dataclass
class Curve:
    """Settings of one defense (or family) joined into a line, sorted by mean utility."""

    label: str
    group: str
    settings: list[SettingSummary]
    varied: list[str]


@dataclasses.dataclass
class ComparisonSummary:
    """Everything summarised for one comparison."""

    comparison: Comparison
    choice: MetricChoice
    settings: list[SettingSummary]
    curves: list[Curve]
    floor: Interval
    ceiling: Interval

    @property
    def frontier(self) -> list[SettingSummary]:
        """Frontier settings, by falling utility."""
        points = [s for s in self.settings if s.on_frontier]
        return sorted(points, key=lambda s: (-s.utility.mean, s.leakage.mean, s.spec))

    @property
    def leakage_undefined(self) -> bool:
        """True when normalised leakage is chosen and no setting has a value for it.

        That happens when the undefended attack's ceiling does not exceed its floor
        for every seed, so ``(score - floor) / (ceiling - floor)`` is undefined.
        """
        return not self.choice.raw and bool(self.settings) and all(s.leakage.n == 0 for s in self.settings)

    @property
    def low_headroom(self) -> list[SettingSummary]:
        """Settings with at least one low-headroom seed for the chosen leakage metric."""
        return [s for s in self.settings if s.low_headroom_seeds]

    def best_within_budget(self, min_utility: float) -> SettingSummary | None:
        """Return the least-leaking setting whose mean utility is at least ``min_utility``.

        Ties in leakage go to the higher utility, then to the spec string. ``None``
        when no setting meets the budget.
        """
        meeting = [
            s for s in self.settings
            if not math.isnan(s.utility.mean) and not math.isnan(s.leakage.mean) and s.utility.mean >= min_utility
        ]
        if not meeting:
            return None
        return min(meeting, key=lambda s: (s.leakage.mean, -s.utility.mean, s.spec))


def split_comparisons(records: list[dict[str, Any]]) -> dict[Comparison, list[dict[str, Any]]]:
    """Group records by :class:`Comparison`; warn when they come from several datasets."""
    groups: dict[Comparison, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(Comparison.of(record), []).append(record)
    fingerprints = sorted({c.fingerprint for c in groups})
    if len(fingerprints) > 1:
        logger.warning(
            "the records come from %d datasets (fingerprints %s); each is summarised on its own",
            len(fingerprints), ", ".join(f[:19] for f in fingerprints),
        )
    return groups


def filter_records(
    records: list[dict[str, Any]], *, threat: str | None = None, dataset: str | None = None,
) -> list[dict[str, Any]]:
    """Keep records of one threat and of datasets whose fingerprint or name starts with ``dataset``."""
    kept = records
    if threat is not None:
        kept = [r for r in kept if r["threat"] == threat]
    if dataset is not None:
        kept = [
            r for r in kept
            if r["dataset"]["fingerprint"].startswith(dataset)
            or r["dataset"]["fingerprint"].removeprefix("sha256:").startswith(dataset)
            or r["dataset"].get("name") == dataset
        ]
    return kept


def summarise(records: list[dict[str, Any]], choice: MetricChoice = MetricChoice(),
              group_by: str = "name") -> list[ComparisonSummary]:
    """Average seeds per setting, build curves and mark the frontier, per comparison.

    Args:
      records: store records (any mix of datasets, threats and settings).
      choice: the leakage and utility metrics.
      group_by: ``"name"`` joins settings of one defense name into a curve,
        ``"family"`` joins every defense of one registry family.

    Raises:
      SummaryError: ``group_by`` is invalid or a metric is missing from the records.
    """
    if group_by not in ("name", "family"):
        raise SummaryError(f"invalid group_by {group_by!r}; choose 'name' or 'family'")
    summaries = []
    for comparison, members in split_comparisons(records).items():
        settings = _settings(members, choice)
        _warn_missing(comparison, choice, settings)
        mask = pareto_mask([s.utility.mean for s in settings], [s.leakage.mean for s in settings])
        for setting, on in zip(settings, mask):
            setting.on_frontier = bool(on)
        summaries.append(ComparisonSummary(
            comparison=comparison,
            choice=choice,
            settings=settings,
            curves=_curves(settings, group_by),
            floor=interval(_bound(r, choice, "floor") for r in members),
            ceiling=interval(_bound(r, choice, "ceiling") for r in members),
        ))
    return summaries


def _bound(record: dict[str, Any], choice: MetricChoice, which: str) -> float:
    if not choice.raw:
        return 0.0 if which == "floor" else 1.0
    return record["leakage"][choice.leakage_name(record["k"])][which]


def _settings(records: list[dict[str, Any]], choice: MetricChoice) -> list[SettingSummary]:
    by_spec: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_spec.setdefault(key_spec(record["defense"]), []).append(record)

    settings = []
    for members in by_spec.values():
        members = sorted(members, key=lambda r: r["seed"])
        first = members[0]
        metrics = {}
        for name in first.get("leakage", {}):
            metrics[f"leakage/{name}"] = interval(r["leakage"].get(name, {}).get("normalised") for r in members)
            metrics[f"leakage_raw/{name}"] = interval(r["leakage"].get(name, {}).get("score") for r in members)
        for name in first.get("utility", {}):
            metrics[f"utility/{name}"] = interval(r["utility"].get(name, {}).get("score") for r in members)

        leakage = [leakage_value(r, choice) for r in members]
        utility = [utility_value(r, choice) for r in members]
        missing = sum(lv is None or uv is None for lv, uv in zip(leakage, utility))
        low_headroom = sum(
            bool(r["leakage"][choice.leakage_name(r["k"])].get("low_headroom")) for r in members
        )
        names = [part.name for part in parse_chain(first["defense"])]
        props = first.get("defense_properties", {})
        settings.append(SettingSummary(
            spec=first["defense"],
            name="|".join(names),
            family=_family(names),
            seeds=[r["seed"] for r in members],
            leakage=interval(leakage),
            utility=interval(utility),
            metrics=metrics,
            expected_cosine=props.get("expected_cosine"),
            empirical_cosine=interval(r.get("defense_properties", {}).get("empirical_cosine") for r in members),
            bytes_per_vector=props.get("bytes_per_vector"),
            output_dim=props.get("output_dim"),
            missing_seeds=missing,
            low_headroom_seeds=low_headroom,
        ))
    return settings


def _warn_missing(comparison: Comparison, choice: MetricChoice, settings: list[SettingSummary]) -> None:
    """Log one warning per comparison when seeds lack a value for the chosen metrics."""
    missing = sum(s.missing_seeds for s in settings)
    if not missing:
        return
    runs = sum(len(s.seeds) for s in settings)
    leakage = choice.leakage_name(comparison.k)
    if not choice.raw and all(s.leakage.n == 0 for s in settings):
        logger.warning(
            "%s: normalised %s is undefined for all %d runs, because the undefended attack's ceiling "
            "does not exceed its floor; use --raw to compare raw scores",
            comparison.title(), leakage, runs,
        )
        return
    affected = [s for s in settings if s.missing_seeds]
    logger.warning(
        "%s: %d of %d runs (%d of %d settings) have no value for %s or %s and are left out; "
        "normalised leakage is undefined where the ceiling does not exceed the floor",
        comparison.title(), missing, runs, len(affected), len(settings), leakage,
        choice.utility_name(comparison.k),
    )


def _family(names: list[str]) -> str:
    from slime_def.defenses.base import available_defenses

    entries = available_defenses()
    families = [entries[name].family if name in entries else name for name in names]
    return "|".join(dict.fromkeys(families))


def _curves(settings: list[SettingSummary], group_by: str) -> list[Curve]:
    groups: dict[str, list[SettingSummary]] = {}
    for setting in settings:
        groups.setdefault(setting.name if group_by == "name" else setting.family, []).append(setting)

    curves = []
    for group, members in groups.items():
        members = sorted(members, key=lambda s: (s.utility.mean, -s.leakage.mean, s.spec))
        label, varied = _curve_label(group, members, group_by)
        curves.append(Curve(label, group, members, varied))
    return curves


def _curve_label(group: str, members: list[SettingSummary], group_by: str) -> tuple[str, list[str]]:
    """Return the legend text: the spec with the parameters shared by all settings, and the varied names."""
    if group_by == "family" and len({s.name for s in members}) > 1:
        return f"{group}: {', '.join(dict.fromkeys(s.name for s in members))}", []
    chains = [parse_chain(s.spec) for s in members]
    if len(chains[0]) > 1:
        return (members[0].spec if len(members) == 1 else group), []

    params = [dict(chain[0].kwargs) for chain in chains]
    names = list(dict.fromkeys(name for p in params for name in p))
    fixed = [(n, params[0][n]) for n in names if all(n in p and p[n] == params[0][n] for p in params)]
    varied = [n for n in names if n not in dict(fixed)]
    label = format_spec(Spec(chains[0][0].name, tuple(fixed)))
    if varied:
        label += f", varying {', '.join(varied)}"
    return label, varied


def load_summaries(store_path, choice: MetricChoice = MetricChoice(), *, threat: str | None = None,
                   dataset: str | None = None, group_by: str = "name") -> tuple[list[dict[str, Any]], list[ComparisonSummary]]:
    """Read a store, keep the requested threat and dataset, and summarise it.

    Returns:
      The kept records and their summaries.

    Raises:
      StoreError: the store is missing or corrupt.
      SummaryError: no record is left after filtering (the message lists what the store has).
    """
    from pathlib import Path

    from slime_def.evaluate.store import ResultStore, StoreError

    path = Path(store_path)
    if not path.is_file():
        raise StoreError(f"results store {path} not found; create it with `slime-def sweep --out {path}`")
    records = ResultStore(path).read().records
    if not records:
        raise SummaryError(f"{path} contains no records; run `slime-def sweep --out {path}` first")
    kept = filter_records(records, threat=threat, dataset=dataset)
    if not kept:
        threats = ", ".join(sorted({r["threat"] for r in records}))
        datasets = ", ".join(sorted({r["dataset"]["fingerprint"][:19] for r in records}))
        raise SummaryError(
            f"no record in {path} matches the filters (threat {threat or 'any'}, dataset {dataset or 'any'}); "
            f"the store has threats {threats} and datasets {datasets}"
        )
    return kept, summarise(kept, choice, group_by)
