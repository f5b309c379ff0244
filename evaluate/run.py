"""One evaluation run: SLImE against one defense, leakage and utility on the same vectors.

The run has two parts so that sweeps build the defense-independent work once:

* :func:`prepare` draws the split, L2-normalises the victim and attacker spaces,
  trains the attacker's retriever on its auxiliary collection, fits the clean
  alignment map, and measures the leakage ceiling (no defense) and floors
  (random victim vectors; the mean-vector and most-frequent-tags baselines).
* :func:`attack_defense` fits and applies one defense to the victim's stored
  vectors (alignment items and targets), attacks the defended targets under
  the chosen threat model, and measures utility on the same defended targets.

:func:`evaluate` does both and returns one JSON-ready record.

Threat models:

* ``clean-pairs``: the attacker's alignment pairs are undefended, so ``W`` is
  fitted once on clean vectors. When the defense changes the dimension, the
  attacker, who does not know the defense, zero-pads or truncates the stored
  vectors to the victim dimension before applying ``W``; the record says so.
* ``defended-pairs``: the attacker collects its pairs from the defended store,
  so ``W`` is fitted on defended alignment vectors.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Callable

import jax
import numpy as np

from slime_def.attack.alignment import make_aligner
from slime_def.attack.retrieval import TagPredictions, make_retriever, normalize_rows
from slime_def.data.dataset import EmbeddingDataset
from slime_def.data.readers import load_dataset
from slime_def.defenses import make_defense
from slime_def.defenses.base import resolved_spec
from slime_def.errors import DatasetError, ParameterError
from slime_def.evaluate import leakage as leakage_metrics
from slime_def.evaluate import neighbourhood, tags, utility
from slime_def.evaluate.splits import MIN_TARGETS, Split, make_split
from slime_def.records import package_versions, utc_now
from slime_def.specs import format_spec, parse_chain

logger = logging.getLogger(__name__)

THREATS = ("clean-pairs", "defended-pairs")
# Scores are fractions in [0, 1]. When the undefended attack beats its floor by
# less than this, the normalised value divides by noise, so records flag it.
LOW_HEADROOM = 0.02
RECORD_SCHEMA = "slime-def/eval-record"
RECORD_VERSION = 1


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Options of one run; every field is stored in the result record.

    Attributes:
      defense: defense spec string, for example ``"gaussian(sigma=0.05)"``.
      threat: ``"clean-pairs"`` or ``"defended-pairs"``.
      retriever: retriever spec, ``"knn"`` or ``"mlp"`` with parameters.
      aligner: alignment spec, ``"ridge(l2=0.1)"``, ``"lstsq"`` or ``"procrustes"``.
      align_pairs: number of alignment pairs the attacker holds.
      auxiliary_fraction: share of the non-alignment items in the attacker's
        auxiliary collection; the rest are the targets.
      k: cut-off for tag scores, kNN overlap and category precision.
      seed: seeds the split, the defense's PRNG key and the retriever's training.
      victim_space, attacker_space: space names; ``None`` picks the dataset's
        only ``victim/...`` and ``attacker/...`` space.
    """

    defense: str = "none"
    threat: str = "clean-pairs"
    retriever: str = "knn"
    aligner: str = "ridge"
    align_pairs: int = 200
    auxiliary_fraction: float = 0.5
    k: int = 5
    seed: int = 0
    victim_space: str | None = None
    attacker_space: str | None = None

    def validate(self) -> None:
        """Check the options that need no data; raise a user-facing error naming the fix."""
        if self.threat not in THREATS:
            raise ParameterError(f"unknown threat {self.threat!r}; choose one of: {', '.join(THREATS)}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ParameterError(f"k must be a positive integer, got {self.k!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ParameterError(f"seed must be a non-negative integer, got {self.seed!r}")
        parse_chain(self.defense)


@dataclasses.dataclass
class PreparedAttack:
    """Everything of a run that does not depend on the defense."""

    config: EvalConfig
    dataset_info: dict[str, Any]
    split: Split
    victim: np.ndarray  # (N, m) L2-normalised
    attacker: np.ndarray  # (N, n) L2-normalised
    target_ids: list[str]
    target_captions: list[str]
    target_tags: list[list[str]]
    target_categories: list[str]
    predict_tags: Callable[[np.ndarray], TagPredictions]
    aligner_spec: str
    retriever_spec: str
    clean_map: np.ndarray  # (m, n)
    ceiling: dict[str, float]
    floors: dict[str, dict[str, float]]
    clean_utility: dict[str, float]
    timings: dict[str, float]

    @property
    def targets_victim(self) -> np.ndarray:
        return self.victim[self.split.targets]

    @property
    def targets_attacker(self) -> np.ndarray:
        return self.attacker[self.split.targets]


def _pick_space(dataset: EmbeddingDataset, requested: str | None, role: str, option: str) -> str:
    if requested is not None:
        dataset.space(requested)  # raises with the list of spaces
        return requested
    candidates = dataset.spaces_with_role(role)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise DatasetError(
            f"{dataset.origin}: no '{role}/...' space; available spaces: {', '.join(dataset.space_names)}. "
            f"Name one with {option}"
        )
    raise DatasetError(
        f"{dataset.origin}: several '{role}/...' spaces ({', '.join(candidates)}); choose one with {option}"
    )


def _check_tags(dataset: EmbeddingDataset) -> None:
    if not any(dataset.tags):
        raise DatasetError(
            f"{dataset.origin}: no item has tags; semantic recovery needs per-item tags "
            "(a 'tags' list in the metadata JSONL, joined by id)"
        )


def prepare(config: EvalConfig, dataset: EmbeddingDataset | str = "default") -> PreparedAttack:
    """Build the defense-independent part of a run (see the module docstring)."""
    config.validate()
    started = time.perf_counter()
    if not isinstance(dataset, EmbeddingDataset):
        dataset = load_dataset(dataset)
    victim_name = _pick_space(dataset, config.victim_space, "victim", "--victim-space")
    attacker_name = _pick_space(dataset, config.attacker_space, "attacker", "--attacker-space")
    if victim_name == attacker_name:
        raise DatasetError(f"victim and attacker space are both {victim_name!r}; choose two different spaces")
    _check_tags(dataset)
    # kNN overlap@k among the targets needs k neighbours besides the item itself.
    split = make_split(
        len(dataset), align_pairs=config.align_pairs, seed=config.seed,
        auxiliary_fraction=config.auxiliary_fraction, min_targets=max(MIN_TARGETS, config.k + 1),
        targets_reason=f" (k={config.k} needs k + 1; lower --k to allow more pairs)",
    )

    victim_norm = float(np.median(np.linalg.norm(dataset.space(victim_name), axis=1)))
    attacker_norm = float(np.median(np.linalg.norm(dataset.space(attacker_name), axis=1)))
    victim = normalize_rows(dataset.space(victim_name))
    attacker = normalize_rows(dataset.space(attacker_name))
    all_tags = dataset.tags
    aux_tags = [all_tags[i] for i in split.auxiliary]
    if not any(aux_tags):
        raise DatasetError(
            f"{dataset.origin}: none of the {split.auxiliary.size} auxiliary items has tags; "
            "the attacker has nothing to learn from, so add tags or change the seed"
        )
    aligner = make_aligner(config.aligner)
    retriever = make_retriever(config.retriever)
    timings = {"load": time.perf_counter() - started}

    clock = time.perf_counter()
    predict = retriever.train(attacker[split.auxiliary], aux_tags, seed=config.seed)
    timings["train_retriever"] = time.perf_counter() - clock

    clock = time.perf_counter()
    clean_map = np.asarray(aligner.fit(victim[split.align], attacker[split.align]))
    timings["fit_alignment"] = time.perf_counter() - clock

    prepared = PreparedAttack(
        config=config,
        dataset_info={
            "origin": dataset.origin,
            "name": dataset.manifest.get("name"),
            "fingerprint": dataset.fingerprint,
            "n_items": len(dataset),
            "victim_space": victim_name,
            "attacker_space": attacker_name,
            "victim_dim": int(victim.shape[1]),
            "attacker_dim": int(attacker.shape[1]),
            # Both spaces are L2-normalised before anything else; these are the input norms.
            "victim_median_norm": victim_norm,
            "attacker_median_norm": attacker_norm,
        },
        split=split,
        victim=victim,
        attacker=attacker,
        target_ids=[dataset.ids[i] for i in split.targets],
        target_captions=[dataset.captions[i] for i in split.targets],
        target_tags=[all_tags[i] for i in split.targets],
        target_categories=[dataset.categories[i] for i in split.targets],
        predict_tags=predict,
        aligner_spec=aligner.spec,
        retriever_spec=retriever.spec,
        clean_map=clean_map,
        ceiling={},
        floors={},
        clean_utility={},
        timings=timings,
    )

    clock = time.perf_counter()
    prepared.ceiling = leakage_scores(prepared, prepared.targets_victim, clean_map)
    prepared.floors = _floors(prepared, aux_tags)
    prepared.clean_utility = {
        f"category_precision@{config.k}": _category_precision(prepared, prepared.targets_victim),
    }
    timings["ceiling_and_floors"] = time.perf_counter() - clock
    return prepared


def leakage_scores(prepared: PreparedAttack, stored: np.ndarray, w: np.ndarray) -> dict[str, float]:
    """Attack stored victim vectors (T, m) with map ``w`` (m, n); return leakage scores.

    Scores: mean cosine and kNN overlap@k between aligned and true attacker
    vectors, recall@{1,k,10} of the true item among the targets' attacker
    vectors, and tag precision, recall and F1 at k (micro, macro, samples).
    """
    k = prepared.config.k
    truth = prepared.targets_attacker
    aligned = np.asarray(stored, np.float32) @ np.asarray(w, np.float32)
    scores: dict[str, float] = {"cosine": neighbourhood.mean_cosine(aligned, truth)}
    scores[f"knn_overlap@{k}"] = neighbourhood.knn_overlap(aligned, truth, k)
    n_targets = truth.shape[0]
    ks = sorted({c for c in (1, k, 10) if c <= n_targets})
    ranks = neighbourhood.recall_at_k(aligned, truth, ks=ks)
    scores.update({key: value for key, value in ranks.items() if key.startswith("recall@")})
    scores["mrr"] = ranks["mrr"]
    predictions = prepared.predict_tags(aligned)
    scores.update({f"tag_{key}": value for key, value in _tag_scores(prepared, predictions.ranked_tags(k)).items()})
    return scores


def recovered_tags(prepared: PreparedAttack, stored: np.ndarray, w: np.ndarray) -> list[dict[str, Any]]:
    """Return, per target, its id, caption, true tags and the attacker's top-k tags with scores."""
    aligned = np.asarray(stored, np.float32) @ np.asarray(w, np.float32)
    ranked = prepared.predict_tags(aligned).top_k(prepared.config.k)
    return [
        {
            "id": item_id,
            "caption": caption,
            "true_tags": list(true_tags),
            "recovered_tags": [[tag, round(score, 4)] for tag, score in predicted],
        }
        for item_id, caption, true_tags, predicted in zip(
            prepared.target_ids, prepared.target_captions, prepared.target_tags, ranked
        )
    ]


def _tag_scores(prepared: PreparedAttack, ranked: list[list[str]]) -> dict[str, float]:
    return tags.tag_scores(ranked, prepared.target_tags, prepared.config.k)


def _floors(prepared: PreparedAttack, aux_tags: list[list[str]]) -> dict[str, dict[str, float]]:
    """Random-vector scores and the stronger of the matching baselines, per metric."""
    k = prepared.config.k
    rng = np.random.default_rng([prepared.config.seed, 1])
    random_vectors = normalize_rows(rng.standard_normal(prepared.targets_victim.shape).astype(np.float32))
    random_scores = leakage_scores(prepared, random_vectors, prepared.clean_map)

    baselines: dict[str, float] = {}
    mean_vector = prepared.attacker[prepared.split.auxiliary].mean(axis=0, keepdims=True)
    predicted_mean = np.repeat(mean_vector, prepared.targets_attacker.shape[0], axis=0)
    baselines["cosine"] = neighbourhood.mean_cosine(predicted_mean, prepared.targets_attacker)
    frequent = tags.most_frequent_tags(aux_tags, k)
    frequent_scores = _tag_scores(prepared, [frequent] * len(prepared.target_tags))
    baselines.update({f"tag_{key}": value for key, value in frequent_scores.items()})

    floors = {}
    for metric, random_score in random_scores.items():
        baseline = baselines.get(metric)
        floors[metric] = {
            "random": random_score,
            "baseline": baseline,
            "floor": leakage_metrics.floor_of(random_score, *(() if baseline is None else (baseline,))),
        }
    return floors


def _category_precision(prepared: PreparedAttack, vectors: np.ndarray) -> float | None:
    if not any(prepared.target_categories):
        return None
    return utility.category_precision_at_k(vectors, prepared.target_categories, prepared.config.k)


def _match_dimension(stored: np.ndarray, dim: int) -> tuple[np.ndarray, str | None]:
    """Zero-pad or truncate rows to ``dim`` coordinates, as a defense-blind attacker would."""
    have = stored.shape[1]
    if have == dim:
        return stored, None
    if have < dim:
        padded = np.zeros((stored.shape[0], dim), np.float32)
        padded[:, :have] = stored
        return padded, f"zero-padded stored vectors from {have} to {dim} dimensions"
    return stored[:, :dim], f"truncated stored vectors from {have} to {dim} dimensions"


def attack_defense(
    prepared: PreparedAttack,
    defense_spec: str | None = None,
    threat: str | None = None,
    *,
    keep_predictions: bool = False,
) -> dict[str, Any]:
    """Defend the victim's store, attack it, and return one result record.

    With ``keep_predictions`` the record gains ``"predictions"``: per target, the
    true tags and the attacker's top-k tags with scores (see :func:`recovered_tags`).
    """
    config = prepared.config
    defense_spec = config.defense if defense_spec is None else defense_spec
    threat = config.threat if threat is None else threat
    config = dataclasses.replace(config, defense=defense_spec, threat=threat)
    config.validate()
    started = time.perf_counter()

    defense = make_defense(defense_spec)
    split = prepared.split
    store_rows = np.concatenate([split.align, split.targets])
    store = prepared.victim[store_rows]
    fit_key, apply_key = jax.random.split(jax.random.key(config.seed), 2)
    state = defense.fit(store, key=fit_key)
    defended = np.asarray(defense.apply(state, store, key=apply_key), dtype=np.float32)
    if defended.ndim != 2 or defended.shape[0] != store.shape[0] or not np.all(np.isfinite(defended)):
        raise ParameterError(
            f"defense {defense.spec!r} returned an array of shape {defended.shape} with "
            f"{int(np.sum(~np.isfinite(defended)))} non-finite values; expected ({store.shape[0]}, d) finite"
        )
    defended_align, defended_targets = defended[: split.align.size], defended[split.align.size :]
    victim_dim = prepared.victim.shape[1]

    adapter_note = None
    if threat == "clean-pairs":
        w = prepared.clean_map
        attacked, adapter_note = _match_dimension(defended_targets, victim_dim)
    else:
        aligner = make_aligner(config.aligner)
        w = np.asarray(aligner.fit(defended_align, prepared.attacker[split.align]))
        attacked = defended_targets
    scores = leakage_scores(prepared, attacked, w)

    leakage = {}
    for metric, score in scores.items():
        floor = prepared.floors[metric]
        ceiling = prepared.ceiling[metric]
        leakage[metric] = {
            "score": score,
            "floor": floor["floor"],
            "ceiling": ceiling,
            "normalised": leakage_metrics.normalised_leakage(score, floor["floor"], ceiling),
            "random": floor["random"],
            "baseline": floor["baseline"],
            "low_headroom": bool(ceiling - floor["floor"] < LOW_HEADROOM),
        }

    k = config.k
    clean_targets = prepared.targets_victim
    utility_scores = {
        f"knn_overlap@{k}": {"score": neighbourhood.knn_overlap(defended_targets, clean_targets, k), "clean": 1.0},
        f"category_precision@{k}": {
            "score": _category_precision(prepared, defended_targets),
            "clean": prepared.clean_utility[f"category_precision@{k}"],
        },
    }
    properties = defense.describe(victim_dim)
    empirical_cosine = None
    if defended_targets.shape[1] == victim_dim:
        empirical_cosine = neighbourhood.mean_cosine(defended_targets, clean_targets)

    record = {
        "schema": RECORD_SCHEMA,
        "schema_version": RECORD_VERSION,
        "defense": defense.spec,
        "defense_resolved": resolved_spec(defense.spec),
        "threat": threat,
        "retriever": prepared.retriever_spec,
        "aligner": prepared.aligner_spec,
        "seed": config.seed,
        "k": k,
        "align_pairs": config.align_pairs,
        "auxiliary_fraction": config.auxiliary_fraction,
        "dataset": dict(prepared.dataset_info),
        "split": split.sizes(),
        "defense_properties": {
            "output_dim": properties.get("output_dim"),
            "expected_cosine": properties.get("expected_cosine"),
            "empirical_cosine": empirical_cosine,
            "bytes_per_vector": properties.get("bytes_per_vector"),
            **{key: value for key, value in properties.items()
               if key not in ("output_dim", "expected_cosine", "bytes_per_vector", "parts")},
        },
        "attacker_note": adapter_note,
        "leakage": leakage,
        "utility": utility_scores,
        "versions": package_versions(),
        "created": utc_now(),
        "timings_s": {**prepared.timings, "defense_and_attack": time.perf_counter() - started},
    }
    if keep_predictions:
        record["predictions"] = recovered_tags(prepared, attacked, w)
    return record


def evaluate(
    config: EvalConfig, dataset: EmbeddingDataset | str = "default", *, keep_predictions: bool = False
) -> dict[str, Any]:
    """Run SLImE against ``config.defense`` on ``dataset`` and return the result record.

    Example:
      >>> record = evaluate(EvalConfig(defense="gaussian(sigma=0.05)", seed=0))  # doctest: +SKIP
      >>> record["leakage"]["tag_micro_f1@5"]["normalised"]  # doctest: +SKIP
    """
    config.validate()
    make_defense(config.defense)  # fail on a bad spec before the slow preparation
    prepared = prepare(config, dataset)
    return attack_defense(prepared, keep_predictions=keep_predictions)
