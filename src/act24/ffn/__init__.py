"""The Squared-ReLU FFN as autograd functions over a kernel backend: the paper's 2:4 recipe (`sparse_sqrelu_ffn`)
and the like-for-like dense baseline (`dense_sqrelu_ffn`); `ffn.fused` runs both on the fused Triton kernels."""

from .sparse import (DenseSqReluFFNFunction, SparseSqReluFFNFunction, dense_sqrelu_ffn, runs_fused, sparse_sqrelu_ffn,
                     tokenwise_sparse_mm)

__all__ = ["DenseSqReluFFNFunction", "SparseSqReluFFNFunction", "dense_sqrelu_ffn", "runs_fused", "sparse_sqrelu_ffn",
           "tokenwise_sparse_mm"]
