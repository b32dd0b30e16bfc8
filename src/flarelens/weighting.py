"""Loss weights of the two classes (non-flaring NF, flaring FL) for a training set.

``"study"`` is the original study's weighting (its create_models/train.py): NF 1 and
FL = 1.5 * (2 * #NF) / (4 * #FL), with #NF and #FL the non-flaring and flaring training
rows before augmentation (the 2 and 4 are the copies its augmentation makes of each).
``"balanced"``: n / (2 * n_class) over the instances one epoch actually shows (after
augmentation). ``"none"``: both 1.
"""

from __future__ import annotations

import numpy as np
import torch

from flarelens.errors import FlareLensError

CLASS_WEIGHT_SCHEMES = ("study", "balanced", "none")

#: Human-readable formula of each scheme (for train.log).
FORMULAS = {
    "study": "NF 1, FL 1.5*(2*#NF)/(4*#FL)",
    "balanced": "n/(2*n_class) over the augmented instances",
    "none": "NF 1, FL 1",
}


def class_weights(targets, scheme: str = "study", augment: str = "study") -> torch.Tensor:
    """Loss weights ``[w_NF, w_FL]`` for the training targets (0/1, one per row before augmentation).

    ``augment`` is the augmentation scheme of :mod:`flarelens.data`; only ``"balanced"``
    depends on it.
    """
    from flarelens.data import expanded_index

    if scheme not in CLASS_WEIGHT_SCHEMES:
        raise FlareLensError(f"--class-weight must be one of {', '.join(CLASS_WEIGHT_SCHEMES)}, got {scheme!r}")
    if scheme == "none":
        return torch.tensor([1.0, 1.0])
    targets = np.asarray(targets).astype(int)
    n_fl, n_nf = int((targets == 1).sum()), int((targets == 0).sum())
    if n_fl == 0 or n_nf == 0:
        raise FlareLensError(
            f"the training rows hold {n_fl} flaring and {n_nf} non-flaring instances: both classes are needed "
            "(use more data, another fold, or --class-weight none)"
        )
    if scheme == "study":
        return torch.tensor([1.0, 1.5 * (2 * n_nf) / (4 * n_fl)])
    shown = targets[expanded_index(targets, augment)[:, 0]]
    n_fl, n_nf = int((shown == 1).sum()), int((shown == 0).sum())
    n = n_fl + n_nf
    return torch.tensor([n / (2 * n_nf), n / (2 * n_fl)])
