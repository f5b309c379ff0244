import numpy as np
import pytest

from slime_def.errors import ParameterError
from slime_def.evaluate.splits import make_split


def test_split_parts_are_disjoint_and_cover_all_items():
    split = make_split(500, align_pairs=120, seed=3)
    parts = [split.align, split.auxiliary, split.targets]
    union = np.concatenate(parts)
    assert len(union) == 500
    assert len(np.unique(union)) == 500
    assert split.sizes() == {"align": 120, "auxiliary": 190, "targets": 190}


def test_split_is_reproducible_per_seed():
    first, second = make_split(300, align_pairs=50, seed=7), make_split(300, align_pairs=50, seed=7)
    np.testing.assert_array_equal(first.targets, second.targets)
    other = make_split(300, align_pairs=50, seed=8)
    assert not np.array_equal(first.targets, other.targets)


@pytest.mark.parametrize("align_pairs", [0, -5, 296, 1000])
def test_split_rejects_impossible_pair_counts(align_pairs):
    with pytest.raises(ParameterError, match="align_pairs"):
        make_split(300, align_pairs=align_pairs, seed=0)


def test_split_error_names_largest_valid_pair_count():
    with pytest.raises(ParameterError, match=r"align_pairs \(--align-pairs\) <= 295"):
        make_split(300, align_pairs=299, seed=0)
