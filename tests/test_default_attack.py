"""The attack on the shipped default dataset: real MobileNetV2 and EfficientNet-Lite0 vectors."""

import numpy as np
import pytest

from slime_def.data.readers import default_dataset_path, load_dataset
from slime_def.evaluate.run import EvalConfig, attack_defense, prepare

pytestmark = pytest.mark.skipif(
    not (default_dataset_path() / "manifest.json").exists(), reason="the shipped default dataset is missing"
)
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def prepared_by_seed():
    dataset = load_dataset("default")
    return {seed: prepare(EvalConfig(seed=seed), dataset) for seed in SEEDS}


def _mean(prepared_by_seed, spec, threat, side, metric):
    values = [
        attack_defense(prepared, spec, threat)[side][metric]["score"] for prepared in prepared_by_seed.values()
    ]
    return float(np.mean(values))


def test_undefended_tags_far_above_floor(prepared_by_seed):
    record = attack_defense(prepared_by_seed[0], "none")
    entry = record["leakage"]["tag_micro_f1@5"]
    assert entry["score"] > 1.5 * entry["floor"]
    assert record["leakage"]["recall@10"]["score"] > 0.5


def test_gaussian_sigma_lowers_leakage(prepared_by_seed):
    f1 = [_mean(prepared_by_seed, f"gaussian(sigma={s})", "clean-pairs", "leakage", "tag_micro_f1@5")
          for s in (0.01, 0.05, 0.2)]
    assert f1[0] > f1[1] > f1[2]


def test_gaussian_sigma_lowers_utility(prepared_by_seed):
    overlap = [_mean(prepared_by_seed, f"gaussian(sigma={s})", "clean-pairs", "utility", "knn_overlap@5")
               for s in (0.01, 0.05, 0.2)]
    assert overlap[0] > overlap[1] > overlap[2]


def test_random_projection_leaks_under_defended_pairs(prepared_by_seed):
    record = attack_defense(prepared_by_seed[0], "random_projection(dim=256)", "defended-pairs")
    assert record["leakage"]["tag_micro_f1@5"]["normalised"] > 0.7
    assert record["leakage"]["recall@10"]["normalised"] > 0.7


def test_random_rotation_learned_away_by_defended_pairs(prepared_by_seed):
    record = attack_defense(prepared_by_seed[0], "random_rotation", "defended-pairs")
    assert record["leakage"]["recall@1"]["normalised"] > 0.9


def test_random_rotation_stops_clean_pairs_attacker(prepared_by_seed):
    record = attack_defense(prepared_by_seed[0], "random_rotation", "clean-pairs")
    assert record["leakage"]["recall@1"]["normalised"] < 0.1
