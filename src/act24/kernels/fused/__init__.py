"""Fused sparsify kernels (Triton): one pass from the FFN's activations to what the sparse GEMM consumes.

`sparsify24_rows` (forward, and dY1 in the backward), per row of a (T x F) input:
    values = relu(Y1)²            (forward)   or   dY2 ⊙ 2 relu(Y1)   (backward, "sparsify y1 in BW")
    2:4 selection along features  (by |values|; in the backward by relu(Y1)², the forward's mask)
    row-wise FP8 scale + quantize (or bf16, unquantized)
    packed values + metadata      (CUTLASS's sm90 layout, `kernels.sm90_layout`, or cuSPARSELt's, `kernels.cslt_layout`)
and, when asked, the masked values and masked relu(Y1)² in the kept form (`Kept24`: the two kept values per
group and a 4-bit code, half the bytes of dense bf16; the backward's other operands).
Without selection it is a row-wise FP8 quantization: of relu(Y1)² (the dense FFN's forward step), or of
dY2 ⊙ 2 relu(Y1) with dY1 and relu(Y1)² also written in bf16 (`dense_backward_rows`, the dense FFN's backward step).

`sparsify24_tokens` (backward BW2 / BW4): the transpose of a (T x F) forward-masked operand (dense or kept),
tokens permuted, 2:4 along tokens on the sparse features and quantized dense rows for the dense features of the
95/5 split, in one pass. Its FP8 scales (one per feature) come from `column_stats` (`kept_column_stats`), which
also counts the non-zeros that decide the split, in one read; `split_destinations` turns the counts into the
split without sorting. `gather_rows` puts the split GEMMs' output rows back in feature order.

Each row's FP8 scale needs the row's maximum before any value is written. A program owns one row: it reads
the whole row for the maximum, then writes block by block, reading the row again mostly from L2; the
quantization without 2:4 holds the row on chip and reads it once (see `LaunchConfig`). Values and metadata
follow the reference quantization (`kernels.fp8.quantize_rowwise_fp8`) and CUTLASS's compressor bit for bit: ties
keep the lower index, groups whose kept values quantize to zero get the compressor's indices.

Run on the CPU under `TRITON_INTERPRET=1` (slow; the tests use small shapes).

Modules: `formats` (Packed24, Kept24, LaunchConfig and the tuned launch settings), `bits` (device helpers),
`rows` (the row kernel: sparsify24_rows, quantize_rows, dense_backward_rows), `tokens` (the token-wise kernel
and the 95/5 split's destinations), `columns` (column statistics and the gather of split GEMM rows) and `scaling`
(row and column scales applied to a GEMM's output, for cuSPARSELt).
"""

from .columns import column_stats, gather_rows, kept_column_stats
from .formats import (BACKWARD, BACKWARD_ROWS_CONFIG, COLUMNS_CONFIG, CUSPARSELT, CUTLASS, FORWARD, GATHER_CONFIG,
                      INTERPRETED, KEPT_COLUMNS_CONFIG, KEPT_TOKENS_CONFIG, ON_CHIP_MAX_K, PLAIN, QUANTIZE_CONFIG,
                      ROWS_CONFIG, TOKENS_CONFIG, TRANSPOSE_CONFIG, Kept24, LaunchConfig, Packed24, fit_block_k)
from .scaling import scale_rows_cols_
from .rows import dense_backward_rows, quantize_fits, quantize_rows, row_blocks, sparsify24_rows
from .tokens import (feature_destinations, quantize_transposed, sparsify24_tokens, split_destinations, tokens_split,
                     transposed_fits)

__all__ = ["BACKWARD", "BACKWARD_ROWS_CONFIG", "COLUMNS_CONFIG", "CUSPARSELT", "CUTLASS", "FORWARD", "GATHER_CONFIG",
           "INTERPRETED", "KEPT_COLUMNS_CONFIG", "KEPT_TOKENS_CONFIG", "ON_CHIP_MAX_K", "PLAIN", "QUANTIZE_CONFIG",
           "ROWS_CONFIG", "TOKENS_CONFIG", "TRANSPOSE_CONFIG", "Kept24", "LaunchConfig", "Packed24", "column_stats",
           "dense_backward_rows", "feature_destinations", "fit_block_k", "gather_rows", "kept_column_stats",
           "quantize_fits", "quantize_rows", "quantize_transposed", "row_blocks", "scale_rows_cols_",
           "sparsify24_rows", "sparsify24_tokens", "split_destinations", "tokens_split", "transposed_fits"]
