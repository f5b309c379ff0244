"""Seeded, disjoint splits of a victim's items for one evaluation run.

* ``align``: the attacker's alignment pairs (it has their victim vectors and
  embeds the same images with its own encoder);
* ``auxiliary``: the attacker's own tagged and captioned collection, used only
  in attack space to train the retriever;
* ``targets``: the victim's private items whose defended vectors are attacked
  and whose utility is measured.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from slime_def.errors import ParameterError

MIN_TARGETS = 3
MIN_AUXILIARY = 2


@dataclasses.dataclass(frozen=True)
class Split:
    """Row indices of the three disjoint parts, each sorted ascending."""

    align: np.ndarray
    auxiliary: np.ndarray
    targets: np.ndarray
    seed: int

    def sizes(self) -> dict[str, int]:
        return {
            "align": int(self.align.size),
            "auxiliary": int(self.auxiliary.size),
            "targets": int(self.targets.size),
        }


def _part_sizes(n_items: int, align_pairs: int, auxiliary_fraction: float) -> tuple[int, int]:
    rest = n_items - align_pairs
    n_aux = int(round(rest * auxiliary_fraction))
    return n_aux, rest - n_aux


def max_align_pairs(n_items: int, *, auxiliary_fraction: float = 0.5, min_targets: int = MIN_TARGETS) -> int:
    """Return the largest pair count that leaves enough auxiliary items and targets (0 if none)."""
    for align_pairs in range(n_items - 1, 0, -1):
        n_aux, n_targets = _part_sizes(n_items, align_pairs, auxiliary_fraction)
        if n_aux >= MIN_AUXILIARY and n_targets >= min_targets:
            return align_pairs
    return 0


def make_split(
    n_items: int,
    *,
    align_pairs: int,
    seed: int,
    auxiliary_fraction: float = 0.5,
    min_targets: int = MIN_TARGETS,
    targets_reason: str = "",
) -> Split:
    """Draw a seeded split of ``n_items`` rows.

    ``align_pairs`` rows go to alignment; of the rest, ``auxiliary_fraction``
    (rounded) goes to the attacker's auxiliary collection and the remainder are
    the targets, of which there must be at least ``min_targets``
    (``targets_reason`` explains that number in the error message).

    Raises:
      ParameterError: ``align_pairs`` or ``auxiliary_fraction`` leaves too few
        auxiliary items or targets.
    """
    if isinstance(align_pairs, bool) or not isinstance(align_pairs, (int, np.integer)) or align_pairs < 1:
        raise ParameterError(f"align_pairs (--align-pairs) must be a positive integer, got {align_pairs!r}")
    if not 0.0 < auxiliary_fraction < 1.0:
        raise ParameterError(
            f"auxiliary_fraction (--auxiliary-fraction) must be in (0, 1), got {auxiliary_fraction!r}"
        )
    n_aux, n_targets = _part_sizes(n_items, int(align_pairs), auxiliary_fraction)
    if n_aux < MIN_AUXILIARY or n_targets < min_targets:
        largest = max_align_pairs(n_items, auxiliary_fraction=auxiliary_fraction, min_targets=min_targets)
        fix = (
            f"use align_pairs (--align-pairs) <= {largest} for this dataset"
            if largest
            else "this dataset is too small; it needs more items"
        )
        raise ParameterError(
            f"align_pairs={align_pairs} leaves {max(n_aux, 0)} auxiliary items and {max(n_targets, 0)} "
            f"targets out of {n_items} items, but at least {MIN_AUXILIARY} auxiliary items and "
            f"{min_targets} targets are needed{targets_reason}; {fix}"
        )
    order = np.random.default_rng(seed).permutation(n_items)
    align = np.sort(order[:align_pairs])
    auxiliary = np.sort(order[align_pairs : align_pairs + n_aux])
    targets = np.sort(order[align_pairs + n_aux :])
    return Split(align, auxiliary, targets, int(seed))
