"""Tag scores checked against a reference that enumerates every (item, tag) decision."""

import random

import pytest

from slime_def.errors import ParameterError
from slime_def.evaluate.tags import most_frequent_tags, tag_scores

VOCABULARY = [f"tag{number:02d}" for number in range(30)]


def safe_divide(numerator, denominator):
    if denominator == 0:
        return 0.0
    return numerator / denominator


def harmonic_f1(precision, recall):
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def reference_scores(predicted, truth, k):
    """Brute force: build the list of (item, tag, predicted, true) decisions, then count."""
    heads = [list(ranked)[:k] for ranked in predicted]
    tags = sorted(set().union(*map(set, truth), *map(set, heads)))
    decisions = []
    for item in range(len(truth)):
        for tag in tags:
            decisions.append((item, tag, tag in heads[item], tag in truth[item]))

    def count(rows, was_predicted, was_true):
        return sum(1 for row in rows if row[2] == was_predicted and row[3] == was_true)

    def scores_of(rows):
        tp = count(rows, True, True)
        fp = count(rows, True, False)
        fn = count(rows, False, True)
        precision = safe_divide(tp, tp + fp)
        recall = safe_divide(tp, tp + fn)
        return precision, recall, harmonic_f1(precision, recall)

    micro = scores_of(decisions)
    per_tag = [scores_of([row for row in decisions if row[1] == tag]) for tag in tags]
    per_item = [scores_of([row for row in decisions if row[0] == item]) for item in range(len(truth))]

    def mean_columns(rows):
        if not rows:
            return 0.0, 0.0, 0.0
        return tuple(sum(row[column] for row in rows) / len(rows) for column in range(3))

    result = {}
    for average, values in (("micro", micro), ("macro", mean_columns(per_tag)), ("samples", mean_columns(per_item))):
        for name, value in zip(("precision", "recall", "f1"), values):
            result[f"{average}_{name}@{k}"] = value
    return result


def random_collection(seed, n_items, max_truth=5, max_predicted=12):
    generator = random.Random(seed)
    truth = [set(generator.sample(VOCABULARY, generator.randint(0, max_truth))) for _ in range(n_items)]
    predicted = [generator.sample(VOCABULARY, generator.randint(0, max_predicted)) for _ in range(n_items)]
    return predicted, truth


# tag_scores


@pytest.mark.parametrize("seed, n_items", [(0, 1), (1, 17), (2, 200)])
@pytest.mark.parametrize("k", [1, 3, 5, 10])
def test_tag_scores_match_reference(seed, n_items, k):
    predicted, truth = random_collection(seed, n_items)

    scores = tag_scores(predicted, truth, k)

    expected = reference_scores(predicted, truth, k)
    assert scores.keys() == expected.keys()
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value, abs=1e-12), key


def test_tag_scores_hand_computed():
    predicted = [["a", "b", "c"], ["b", "d"], []]
    truth = [{"a", "c", "d"}, {"b"}, {"c"}]

    scores = tag_scores(predicted, truth, k=2)

    # Top-2 lists: [a, b], [b, d], []. Hits: a (item 0), b (item 1).
    # Micro: 2 hits of 4 predictions and 5 true tags.
    assert scores["micro_precision@2"] == pytest.approx(1 / 2)
    assert scores["micro_recall@2"] == pytest.approx(2 / 5)
    assert scores["micro_f1@2"] == pytest.approx(4 / 9)
    # Macro over tags a, b, c, d: P = (1, 1/2, 0, 0), R = (1, 1, 0, 0), F1 = (1, 2/3, 0, 0).
    # Tag c is never predicted, so its 0/0 precision counts as 0.
    assert scores["macro_precision@2"] == pytest.approx(3 / 8)
    assert scores["macro_recall@2"] == pytest.approx(1 / 2)
    assert scores["macro_f1@2"] == pytest.approx(5 / 12)
    # Samples: P = (1/2, 1/2, 0), R = (1/3, 1, 0), F1 = (2/5, 2/3, 0).
    assert scores["samples_precision@2"] == pytest.approx(1 / 3)
    assert scores["samples_recall@2"] == pytest.approx(4 / 9)
    assert scores["samples_f1@2"] == pytest.approx(16 / 45)


def test_tag_scores_key_names():
    scores = tag_scores([["a"]], [{"a"}], k=3)

    assert sorted(scores) == sorted(
        f"{average}_{name}@3" for average in ("micro", "macro", "samples") for name in ("precision", "recall", "f1")
    )


def test_tag_scores_perfect_predictions():
    truth = [{"a", "b"}, {"c"}, {"a", "d", "e"}]
    predicted = [sorted(tags) for tags in truth]

    scores = tag_scores(predicted, truth, k=3)

    assert all(value == 1.0 for value in scores.values())


def test_tag_scores_short_lists_divide_by_own_length():
    # One prediction, correct, with k=5: precision is 1/1, not 1/5.
    scores = tag_scores([["a"]], [{"a", "b"}], k=5)

    assert scores["micro_precision@5"] == 1.0
    assert scores["samples_precision@5"] == 1.0
    assert scores["micro_recall@5"] == 0.5


def test_tag_scores_empty_predictions_give_zero_precision():
    truth = [{"a"}, {"b", "c"}]

    scores = tag_scores([[], []], truth, k=3)

    assert all(value == 0.0 for value in scores.values())


def test_tag_scores_empty_truth_gives_zero_recall():
    scores = tag_scores([["a"]], [set()], k=1)

    assert scores["samples_recall@1"] == 0.0
    assert scores["micro_recall@1"] == 0.0
    assert scores["samples_precision@1"] == 0.0


def test_tag_scores_use_only_top_k():
    # The correct tag sits at rank 3, so k=2 misses it and k=3 finds it.
    predicted = [["x", "y", "a"]]
    truth = [{"a"}]

    assert tag_scores(predicted, truth, k=2)["micro_recall@2"] == 0.0
    assert tag_scores(predicted, truth, k=3)["micro_recall@3"] == 1.0


def test_tag_scores_accept_tuples_and_lists_as_truth():
    from_sets = tag_scores([["a", "b"]], [{"a"}], k=2)
    from_tuples = tag_scores([("a", "b")], [("a",)], k=2)

    assert from_sets == from_tuples


def test_tag_scores_vocabulary_superset_changes_nothing():
    predicted, truth = random_collection(3, 40)

    plain = tag_scores(predicted, truth, 5)
    checked = tag_scores(predicted, truth, 5, vocabulary=VOCABULARY + ["unused"])

    assert checked == plain


def test_tag_scores_reject_tag_outside_vocabulary():
    with pytest.raises(ValueError, match="not in the vocabulary: 'Dog'"):
        tag_scores([["Dog"]], [{"dog"}], k=1, vocabulary=["dog", "cat"])


def test_tag_scores_vocabulary_ignores_tags_beyond_k():
    scores = tag_scores([["dog", "unknown"]], [{"dog"}], k=1, vocabulary=["dog"])

    assert scores["micro_precision@1"] == 1.0


def test_tag_scores_reject_length_mismatch():
    with pytest.raises(ValueError, match="same items, got 2 and 1"):
        tag_scores([["a"], ["b"]], [{"a"}], k=1)


def test_tag_scores_reject_no_items():
    with pytest.raises(ValueError, match="empty"):
        tag_scores([], [], k=1)


@pytest.mark.parametrize("k", [0, -3, 1.5, True])
def test_tag_scores_reject_invalid_k(k):
    with pytest.raises(ParameterError, match="positive integer"):
        tag_scores([["a"]], [{"a"}], k=k)


def test_tag_scores_reject_string_prediction():
    with pytest.raises(ValueError, match=r"predicted\[0\] is the string"):
        tag_scores(["dog"], [{"dog"}], k=1)


def test_tag_scores_reject_string_truth():
    with pytest.raises(ValueError, match=r"truth\[0\] is the string"):
        tag_scores([["dog"]], ["dog"], k=1)


def test_tag_scores_reject_repeated_tag_in_top_k():
    with pytest.raises(ValueError, match=r"repeats tag\(s\) \['a'\]"):
        tag_scores([["a", "b", "a"]], [{"a"}], k=3)


def test_tag_scores_allow_repeat_beyond_k():
    scores = tag_scores([["a", "b", "a"]], [{"a"}], k=2)

    assert scores["micro_precision@2"] == 0.5


# most_frequent_tags


def test_most_frequent_hand_computed():
    train = [{"cat", "sofa"}, {"cat"}, {"dog", "sofa"}, {"ant"}]

    assert most_frequent_tags(train, 1) == ["cat"]
    assert most_frequent_tags(train, 2) == ["cat", "sofa"]
    assert most_frequent_tags(train, 4) == ["cat", "sofa", "ant", "dog"]


def test_most_frequent_ties_alphabetical():
    train = [{"zebra"}, {"apple"}, {"mango"}]

    assert most_frequent_tags(train, 3) == ["apple", "mango", "zebra"]


def test_most_frequent_counts_items_not_occurrences():
    train = [["dog", "dog", "dog"], ["cat"], ["cat"]]

    assert most_frequent_tags(train, 1) == ["cat"]


def test_most_frequent_returns_all_when_k_exceeds_tags():
    assert most_frequent_tags([{"b"}, {"a", "b"}], 10) == ["b", "a"]


def test_most_frequent_matches_reference():
    _, truth = random_collection(4, 300)

    expected_counts = {tag: sum(1 for tags in truth if tag in tags) for tag in VOCABULARY}
    expected = sorted((-count, tag) for tag, count in expected_counts.items() if count > 0)
    expected_tags = [tag for _, tag in expected][:7]

    assert most_frequent_tags(truth, 7) == expected_tags


def test_most_frequent_baseline_scores_like_reference():
    train_predicted, train_truth = random_collection(5, 100)
    _, test_truth = random_collection(6, 50)
    baseline = most_frequent_tags(train_truth, 5)

    scores = tag_scores([baseline] * len(test_truth), test_truth, 5)

    expected = reference_scores([baseline] * len(test_truth), test_truth, 5)
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value, abs=1e-12), key


@pytest.mark.parametrize("k", [0, 2.0])
def test_most_frequent_rejects_invalid_k(k):
    with pytest.raises(ParameterError, match="positive integer"):
        most_frequent_tags([{"a"}], k)


def test_most_frequent_rejects_string_item():
    with pytest.raises(ValueError, match=r"train_tags\[1\] is the string"):
        most_frequent_tags([{"a"}, "ab"], 1)
