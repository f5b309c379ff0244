"""Tag-recovery scores: precision, recall and F1 at k in micro, macro and per-item averages.

Zero-division rule, used everywhere in this module: a ratio whose denominator is 0 counts as
0. An item with no predictions has precision 0, and an item with an empty truth set has
recall 0. A tag never predicted has precision 0, and a tag absent from the truth has recall 0.
F1 is 0 whenever precision + recall is 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence

from slime_def.errors import ParameterError

_SCORE_NAMES = ("precision", "recall", "f1")
_AVERAGES = ("micro", "macro", "samples")


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def _f1(precision: float, recall: float) -> float:
    return _ratio(2.0 * precision * recall, precision + recall)


def _check_tag_count(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ParameterError(f"k must be a positive integer number of tags, got {k!r}.")
    return k


def _top_predictions(predicted: Sequence[Sequence[str]], k: int) -> list[list[str]]:
    """Return the first k tags of each ranked list, rejecting strings and repeated tags."""
    top = []
    for item, ranked in enumerate(predicted):
        if isinstance(ranked, str):
            raise ValueError(
                f"predicted[{item}] is the string {ranked!r}, but each item needs a list of tags, "
                f"such as [{ranked!r}]."
            )
        head = list(ranked)[:k]
        if len(set(head)) != len(head):
            repeated = sorted(tag for tag, count in Counter(head).items() if count > 1)
            raise ValueError(
                f"predicted[{item}] repeats tag(s) {repeated} within its top {k}, but "
                "a ranked list must name each tag once."
            )
        top.append(head)
    return top


def _truth_sets(truth: Sequence[Collection[str]]) -> list[set[str]]:
    sets = []
    for item, tags in enumerate(truth):
        if isinstance(tags, str):
            raise ValueError(
                f"truth[{item}] is the string {tags!r}, but each item needs a set of tags, such as {{{tags!r}}}."
            )
        sets.append(set(tags))
    return sets


def _check_vocabulary(top: list[list[str]], truth: list[set[str]], vocabulary: Iterable[str]) -> None:
    known = set(vocabulary)
    used = set().union(*truth, *top)
    unknown = sorted(used - known)
    if unknown:
        listed = ", ".join(repr(tag) for tag in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise ValueError(
            f"{len(unknown)} tag(s) in truth or in the top-k predictions are not in the vocabulary: "
            f"{listed}{more}. Map tag names onto the vocabulary (case, plurals) or drop them."
        )


def tag_scores(
    predicted: Sequence[Sequence[str]],
    truth: Sequence[Collection[str]],
    k: int,
    *,
    vocabulary: Iterable[str] | None = None,
) -> dict[str, float]:
    """Score ranked tag predictions against true tag sets, using the top k predictions per item.

    Each item's top k predicted tags are compared with its true tag set. A predicted tag in the
    truth is a true positive, any other predicted tag a false positive, and a true tag not
    predicted a false negative. An item with fewer than k predictions is scored on the
    predictions it has, so its precision divides by that count, not by k.

    Averages (zero divisions count as 0, see the module docstring):

    - ``micro_*``: pooled over all (item, tag) decisions. Precision = total TP / total
      predictions, recall = total TP / total true tags, F1 from those two.
    - ``macro_*``: per-tag precision, recall and F1 averaged with equal weight over every
      tag that appears in the truth or in some item's top-k predictions. A tag that is never
      predicted, or never true, therefore contributes 0 to all three.
    - ``samples_*``: per-item precision, recall and F1, averaged over items.

    Args:
        predicted: N ranked tag lists, best first. A tag may appear only once within the
            first k entries of a list.
        truth: N true tag sets (any collection of strings).
        k: number of top predictions used per item, at least 1.
        vocabulary: optional set of valid tag names. When given, a tag in the truth or in
            the top-k predictions that is not in it raises ValueError. This catches tag-name
            mismatches that would otherwise count silently as errors. It does not change
            which tags the macro average runs over.

    Returns:
        Nine floats keyed ``"{average}_{score}@{k}"``, for example ``"micro_precision@5"``,
        with average in (micro, macro, samples) and score in (precision, recall, f1).

    Raises:
        ParameterError: k is not a positive integer.
        ValueError: lengths differ, there are no items, an item is a bare string, a tag repeats within a top-k
            list, or a tag is missing from ``vocabulary``.

    Example:
        >>> scores = tag_scores([["dog", "ball"]], [{"dog", "grass"}], k=2)
        >>> scores["micro_precision@2"], scores["micro_recall@2"]
        (0.5, 0.5)
    """
    k = _check_tag_count(k)
    if len(predicted) != len(truth):
        raise ValueError(
            f"predicted and truth must list the same items, got {len(predicted)} and {len(truth)} items."
        )
    if len(truth) == 0:
        raise ValueError("predicted and truth are empty. Pass at least one item to score.")
    top = _top_predictions(predicted, k)
    truth_sets = _truth_sets(truth)
    if vocabulary is not None:
        _check_vocabulary(top, truth_sets, vocabulary)

    true_positives: Counter[str] = Counter()
    predicted_counts: Counter[str] = Counter()
    truth_counts: Counter[str] = Counter()
    item_scores = []
    for head, true_tags in zip(top, truth_sets):
        hits = [tag for tag in head if tag in true_tags]
        true_positives.update(hits)
        predicted_counts.update(head)
        truth_counts.update(true_tags)

        item_precision = _ratio(len(hits), len(head))
        item_recall = _ratio(len(hits), len(true_tags))
        item_scores.append((item_precision, item_recall, _f1(item_precision, item_recall)))

    averages = {
        "micro": _micro_scores(true_positives, predicted_counts, truth_counts),
        "macro": _macro_scores(true_positives, predicted_counts, truth_counts),
        "samples": _mean_columns(item_scores),
    }
    return {
        f"{average}_{name}@{k}": averages[average][position]
        for average in _AVERAGES
        for position, name in enumerate(_SCORE_NAMES)
    }


def _micro_scores(true_positives: Counter, predicted_counts: Counter, truth_counts: Counter) -> tuple:
    precision = _ratio(sum(true_positives.values()), sum(predicted_counts.values()))
    recall = _ratio(sum(true_positives.values()), sum(truth_counts.values()))
    return precision, recall, _f1(precision, recall)


def _macro_scores(true_positives: Counter, predicted_counts: Counter, truth_counts: Counter) -> tuple:
    per_tag = []
    # Sorted so the summation order, and with it the last bit of the mean, does not
    # depend on Python's per-process string hashing.
    for tag in sorted(set(predicted_counts) | set(truth_counts)):
        precision = _ratio(true_positives[tag], predicted_counts[tag])
        recall = _ratio(true_positives[tag], truth_counts[tag])
        per_tag.append((precision, recall, _f1(precision, recall)))
    return _mean_columns(per_tag)


def _mean_columns(rows: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    if not rows:
        return 0.0, 0.0, 0.0
    count = len(rows)
    return tuple(sum(row[column] for row in rows) / count for column in range(3))


def most_frequent_tags(train_tags: Iterable[Collection[str]], k: int) -> list[str]:
    """Return the k tags carried by the most training items, for the most-frequent baseline.

    A tag's frequency is the number of items whose tag set contains it (a tag repeated within
    one item counts once). Equal frequencies are ordered alphabetically. The baseline
    predicts this same list for every item. When the training collection has fewer than k
    distinct tags, all of them are returned, and :func:`tag_scores` then scores the shorter
    lists as they are.

    Args:
        train_tags: one collection of tag strings per training item.
        k: number of tags to return, at least 1.

    Returns:
        Up to k tags, most frequent first.

    Raises:
        ParameterError: k is not a positive integer.
        ValueError: an item is a bare string instead of a collection of tags.

    Example:
        >>> most_frequent_tags([{"cat", "sofa"}, {"cat"}, {"dog", "sofa"}, {"ant"}], k=3)
        ['cat', 'sofa', 'ant']
    """
    k = _check_tag_count(k)
    frequency: Counter[str] = Counter()
    for item, tags in enumerate(train_tags):
        if isinstance(tags, str):
            raise ValueError(
                f"train_tags[{item}] is the string {tags!r}, but each item needs a set of tags, such as {{{tags!r}}}."
            )
        frequency.update(set(tags))

    ranked = sorted(frequency, key=lambda tag: (-frequency[tag], tag))
    return ranked[:k]
