"""Seeded, disjoint splits of a victim's items for one evaluation run.

* ``align``: the attacker's alignment pairs (it holds their victim vectors and
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


def make_split(n_items: int, *, align_pairs: int, seed: int, auxiliary_fraction: float = 0.5) -> Split:
    """Draw a seeded split of ``n_items`` rows.

    ``align_pairs`` rows go to alignment; of the rest, ``auxiliary_fraction``
    (rounded) goes to the attacker's auxiliary collection and the remainder are
    the targets.

    Raises:
      ParameterError: ``align_pairs`` or ``auxiliary_fraction`` leaves too few
        auxiliary items or targets.
    """
    if isinstance(align_pairs, bool) or not isinstance(align_pairs, (int, np.integer)) or align_pairs < 1:
        raise ParameterError(f"align_pairs must be a positive integer, got {align_pairs!r}")
    if not 0.0 < auxiliary_fraction < 1.0:
        raise ParameterError(f"auxiliary_fraction must be in (0, 1), got {auxiliary_fraction!r}")
    rest = n_items - int(align_pairs)
    n_aux = int(round(rest * auxiliary_fraction))
    n_targets = rest - n_aux
    if n_aux < MIN_AUXILIARY or n_targets < MIN_TARGETS:
        most = max(n_items - MIN_AUXILIARY - MIN_TARGETS, 0)
        raise ParameterError(
            f"align_pairs={align_pairs} leaves {max(n_aux, 0)} auxiliary items and {max(n_targets, 0)} "
            f"targets out of {n_items} items; use align_pairs <= {most} for this dataset"
        )
    order = np.random.default_rng(seed).permutation(n_items)
    align = np.sort(order[:align_pairs])
    auxiliary = np.sort(order[align_pairs : align_pairs + n_aux])
    targets = np.sort(order[align_pairs + n_aux :])
    return Split(align, auxiliary, targets, int(seed))
