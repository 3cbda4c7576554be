"""The 2:4 training recipe: the switches of the paper's Table 1, and what follows from them (no torch here).

The sparse FFN (act24.ffn) runs a recipe; the config's `sparse` section sets one (act24.config.SparseConfig holds
it); the fused kernels run only the paper's own recipe (`runs_fused`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from ..settings import check, setting

BACKWARD_MODES = ("sparse", "masked_dense", "straight_through")


@dataclass(frozen=True)
class SparseRecipe:
    backward: str = setting("sparse", "sparse: the paper's backward; masked_dense: the exact gradient of the masked "
                            "forward with dense GEMMs; straight_through: the backward ignores the forward mask",
                            choices=BACKWARD_MODES)
    token_permutation: bool = setting(True, "permute tokens (a fixed random order) before the token-wise 2:4 masks")
    dense_fraction: float = setting(0.05, "densest features kept dense in BW2 / BW4 (0: the naive backward, token-wise "
                                    "2:4 on every feature)", minimum=0, exclusiveMaximum=1)
    mask_dy1: bool = setting(True, "mask dY1 with the forward mask")
    split_multiple: int = setting(32, "sparse-feature count rounded down to this multiple (kernel alignment); raised "
                                  "to the backend's row alignment (FP8 sm90: 64)", minimum=1)
    permutation_seed: int = setting(0, derived="train.seed", minimum=0)

    def __post_init__(self):
        check(self, "sparse.")

    def split_multiple_for(self, row_multiple: int) -> int:
        """The sparse-feature count's multiple on a backend whose sparse operand rows come in `row_multiple`s."""
        return math.lcm(self.split_multiple, row_multiple)

    def sparse_features(self, n_features: int, row_multiple: int = 1) -> int:
        """How many of `n_features` features the 95/5 split sends through 2:4 on such a backend."""
        return n_sparse_features(n_features, self.dense_fraction, self.split_multiple_for(row_multiple))

    @property
    def is_papers(self) -> bool:
        """The paper's backward (sparse, dY1 masked): the one recipe the fused kernels run."""
        return self.backward == "sparse" and self.mask_dy1

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "SparseRecipe":
        return cls(**json.loads(text))


def n_sparse_features(n_features: int, dense_fraction: float, multiple: int = 1) -> int:
    """How many features the 95/5 split sends through 2:4: (1 - dense_fraction) of them, rounded down to a
    multiple of `multiple` (kernel alignment) unless none would be left."""
    n_sparse = n_features - int(round(dense_fraction * n_features))
    return n_sparse - n_sparse % multiple if n_sparse >= multiple else n_sparse
