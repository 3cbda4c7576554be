"""act24's own 2:4 sparse FP8 GEMM for sm90a (CUTLASS 3.x), with the row-wise scales applied in its epilogue.

It reads the sparse operand in the layout the fused kernels write (`act24.kernels.sm90_layout`), is built just in
time with nvcc (`build`), and its kernel is chosen per problem shape among the compiled configurations (`gemm`).
"""

from .build import Sm90GemmUnavailable
from .configs import CONFIGS, GemmConfig
from .gemm import MULTIPLES, choices, missing, run, search, shape_error, sparse_fp8_gemm

__all__ = ["CONFIGS", "GemmConfig", "MULTIPLES", "Sm90GemmUnavailable", "choices", "missing", "run", "search",
           "shape_error", "sparse_fp8_gemm"]
