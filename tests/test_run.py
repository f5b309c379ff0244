import dataclasses

import numpy as np
import pytest

from slime_def.data.dataset import EmbeddingDataset
from slime_def.errors import DatasetError, ParameterError, SpecError
from slime_def.evaluate.run import EvalConfig, attack_defense, evaluate, prepare

CONFIG = EvalConfig(align_pairs=100, seed=0)


@pytest.fixture(scope="module")
def prepared(synthetic):
    return prepare(CONFIG, synthetic)


def test_no_defense_reaches_ceiling(prepared):
    record = attack_defense(prepared, "none", "clean-pairs")
    for metric, entry in record["leakage"].items():
        assert entry["score"] == pytest.approx(entry["ceiling"]), metric
        if entry["normalised"] is not None:
            assert entry["normalised"] == pytest.approx(1.0), metric


def test_no_defense_tags_far_above_floor(prepared):
    entry = attack_defense(prepared, "none")["leakage"]["tag_macro_f1@5"]
    assert entry["score"] > entry["floor"] + 0.2


def test_no_defense_recall_far_above_chance(prepared):
    entry = attack_defense(prepared, "none")["leakage"]["recall@10"]
    assert entry["score"] > 0.9
    assert entry["random"] < 0.3


def test_floor_is_max_of_random_and_baseline(prepared):
    for metric, floor in prepared.floors.items():
        candidates = [floor["random"]] + ([floor["baseline"]] if floor["baseline"] is not None else [])
        assert floor["floor"] == pytest.approx(max(candidates)), metric


def test_mean_vector_baseline_is_mean_cosine(prepared):
    mean = prepared.attacker[prepared.split.auxiliary].mean(axis=0)
    truth = prepared.targets_attacker
    expected = np.mean(truth @ mean / np.linalg.norm(mean))
    assert prepared.floors["cosine"]["baseline"] == pytest.approx(expected, abs=1e-5)


def test_most_frequent_baseline_uses_auxiliary_tags(prepared, synthetic):
    from collections import Counter

    aux_tags = [synthetic.tags[i] for i in prepared.split.auxiliary]
    counts = Counter(tag for tags in aux_tags for tag in tags)
    top = sorted(counts, key=lambda tag: (-counts[tag], tag))[:5]
    truth = prepared.target_tags
    hits = sum(len(set(top) & set(t)) for t in truth)
    assert prepared.floors["tag_micro_precision@5"]["baseline"] == pytest.approx(hits / (5 * len(truth)))


def test_record_carries_provenance(prepared):
    record = attack_defense(prepared, "none")
    assert record["defense"] == "none"
    assert record["seed"] == 0
    assert record["dataset"]["fingerprint"].startswith("sha256:")
    assert record["split"] == {"align": 100, "auxiliary": 150, "targets": 150}
    assert record["versions"]["jax"]
    assert record["retriever"] == "knn(neighbours=10)"


def test_same_seed_gives_same_record(synthetic):
    first = evaluate(CONFIG, synthetic)
    second = evaluate(CONFIG, synthetic)
    assert first["leakage"] == second["leakage"]
    assert first["utility"] == second["utility"]


def test_clean_pairs_pads_smaller_defended_vectors(prepared):
    from slime_def.evaluate.run import _match_dimension

    padded, note = _match_dimension(np.ones((3, 4), np.float32), 6)
    np.testing.assert_array_equal(padded[:, 4:], 0)
    assert "zero-padded" in note
    cut, note = _match_dimension(np.ones((3, 8), np.float32), 6)
    assert cut.shape == (3, 6)
    assert "truncated" in note


def test_unknown_threat_lists_choices():
    with pytest.raises(ParameterError, match="clean-pairs, defended-pairs"):
        EvalConfig(threat="adaptive-ish").validate()


def test_bad_defense_spec_fails_before_preparation(synthetic):
    with pytest.raises(SpecError, match="unknown defense"):
        evaluate(dataclasses.replace(CONFIG, defense="gausian"), synthetic)


def test_missing_attacker_space_lists_available(synthetic):
    only_victim = EmbeddingDataset(
        ids=synthetic.ids, spaces={"victim/x": synthetic.space("victim/synthetic")}, items=synthetic.items
    )
    with pytest.raises(DatasetError, match="no 'attacker/...' space; available spaces: victim/x"):
        prepare(CONFIG, only_victim)


def test_named_space_not_found(synthetic):
    config = dataclasses.replace(CONFIG, attacker_space="attacker/clip")
    with pytest.raises(DatasetError, match="'attacker/clip' not found"):
        prepare(config, synthetic)


def test_dataset_without_tags_is_rejected(synthetic):
    untagged = EmbeddingDataset(
        ids=synthetic.ids, spaces=synthetic.spaces, items=[{"caption": "x"} for _ in synthetic.ids]
    )
    with pytest.raises(DatasetError, match="no item has tags"):
        prepare(CONFIG, untagged)


def test_k_larger_than_targets_is_rejected(synthetic):
    with pytest.raises(ParameterError, match=r"151 targets are needed .k=150 needs k \+ 1"):
        prepare(dataclasses.replace(CONFIG, k=150), synthetic)


def test_record_resolves_default_parameters(prepared):
    record = attack_defense(prepared, "gaussian")
    assert record["defense"] == "gaussian"
    assert record["defense_resolved"] == "gaussian(sigma=0.02, renormalize=True)"


def test_low_headroom_is_flagged(synthetic):
    record = evaluate(dataclasses.replace(CONFIG, align_pairs=2), synthetic)
    for metric, entry in record["leakage"].items():
        expected = entry["ceiling"] - entry["floor"] < 0.02
        assert entry["low_headroom"] == expected, metric


def test_input_norms_are_recorded(synthetic):
    scaled = EmbeddingDataset(
        ids=synthetic.ids,
        spaces={name: 60.0 * matrix for name, matrix in synthetic.spaces.items()},
        items=synthetic.items,
    )
    record = evaluate(CONFIG, scaled)
    assert record["dataset"]["victim_median_norm"] == pytest.approx(60.0, rel=1e-4)
    baseline = evaluate(CONFIG, synthetic)
    assert record["leakage"]["recall@1"]["score"] == pytest.approx(baseline["leakage"]["recall@1"]["score"])
