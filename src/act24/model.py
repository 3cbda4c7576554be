"""A small Llama-style decoder (RMSNorm, RoPE, causal SDPA attention, no biases) in the spirit of nanoGPT,
with interchangeable FFN kinds of equal parameter count."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig, ffn_width
from .ffn import sparse_sqrelu_ffn
from .sparsity.pattern import mask24
from .sparsity.recipe import SparseRecipe


@torch.compiler.disable
def eager_sparse_ffn(x, w1, w2, recipe, backend):
    """The 2:4 FFN function on a kernel backend, never traced: inside a compiled block its kernels run eagerly,
    between compiled graphs."""
    return sparse_sqrelu_ffn(x, w1, w2, recipe, backend)


class FeedForward(nn.Module):
    """Y1 = X W1ᵀ, Y2 = act(Y1) (SwiGLU: silu(Y1) ⊙ X W3ᵀ), Y3 = Y2 W2ᵀ."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.kind = cfg.ffn
        width = ffn_width(cfg)
        self.w1 = nn.Linear(cfg.d_model, width, bias=False)
        self.w3 = nn.Linear(cfg.d_model, width, bias=False) if self.kind == "swiglu" else None
        self.w2 = nn.Linear(width, cfg.d_model, bias=False)
        # Hook point for Y2, the activation that 2:4 sparsity is applied to (see sparsity.stats).
        self.act_out = nn.Identity()
        self.sparse: SparseRecipe | None = None  # set by Transformer.set_sparse
        self.backend = None
        # A function (x, W1, W2) -> Y3 that computes this FFN in training instead (e.g. the fused FP8 custom ops of
        # act24.ffn.fused): set by Transformer.set_ffn_kernel.
        self.kernel = None
        # 2:4 along features on Y2 outside training (inference), for any FFN kind: set_sparse / set_inference24.
        self.mask24_forward = False

    def activation(self, y1: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "sqrelu":
            return F.relu(y1).square()
        if self.kind == "relu":
            return F.relu(y1)
        if self.kind == "gelu":
            return F.gelu(y1)
        return F.silu(y1) * self.w3(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel is not None and self.training and torch.is_grad_enabled():
            return self.kernel(x, self.w1.weight, self.w2.weight)
        if self.sparse is not None and self.training and torch.is_grad_enabled():
            # Masks on dense tensors (the reference backend) compile with the block into one graph, forward and
            # backward; a kernel backend's custom kernels stay outside it.
            dense_math = self.backend is None or self.backend.dense_math
            ffn = sparse_sqrelu_ffn if dense_math else eager_sparse_ffn
            return ffn(x, self.w1.weight, self.w2.weight, self.sparse, self.backend)
        y2 = self.act_out(self.activation(self.w1(x), x))
        if self.mask24_forward:  # 2:4 inference: the same forward as the training function
            y2 = y2 * mask24(y2)
        return self.w2(y2)


def rope_tables(seq_len: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv_freq)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (i, i + head_dim/2) of x (B, H, T, head_dim) by position-dependent angles."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos[: x.shape[-2]], sin[: x.shape[-2]]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.wqkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.wo = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.wqkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.wo(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn_norm = nn.RMSNorm(cfg.d_model, eps=1e-6)
        self.attn = Attention(cfg)
        self.ffn_norm = nn.RMSNorm(cfg.d_model, eps=1e-6)
        self.ffn = FeedForward(cfg)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.ffn(self.ffn_norm(x))


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.RMSNorm(cfg.d_model, eps=1e-6)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        cos, sin = rope_tables(cfg.seq_len, cfg.d_model // cfg.n_heads, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        # GPT-2 / nanoGPT: scale the residual-stream output projections by depth.
        for name, p in self.named_parameters():
            if name.endswith(("attn.wo.weight", "ffn.w2.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        if idx.shape[1] > self.cfg.seq_len:
            raise ValueError(f"sequence length {idx.shape[1]} exceeds model.seq_len={self.cfg.seq_len}")
        x = self.tok_emb(idx)
        for block in self.blocks:
            x = block(x, self.rope_cos, self.rope_sin)
        logits = self.lm_head(self.norm(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        return logits, loss

    def compile_blocks(self) -> None:
        """Compile each block (torchtitan's per-block compilation): one graph per block shape, reused by all."""
        for block in self.blocks:
            block.compile()

    def ffn_modules(self) -> list[FeedForward]:
        return [block.ffn for block in self.blocks]

    def set_sparse(self, recipe: SparseRecipe | None, backend=None) -> None:
        """Switch every FFN to the 2:4 sparse Squared-ReLU FFN (None: back to dense)."""
        if recipe is not None and self.cfg.ffn != "sqrelu":
            raise ValueError(f"the 2:4 sparse FFN is a Squared-ReLU FFN; this model's FFN is {self.cfg.ffn!r}")
        for ffn in self.ffn_modules():
            ffn.sparse, ffn.backend, ffn.mask24_forward = recipe, backend, recipe is not None

    def set_ffn_kernel(self, kernel) -> None:
        """Compute every FFN in training with `kernel(x, W1, W2)` (None: the module's own FFN)."""
        if kernel is not None and self.cfg.ffn != "sqrelu":
            raise ValueError(f"FFN kernels compute a Squared-ReLU FFN; this model's FFN is {self.cfg.ffn!r}")
        for ffn in self.ffn_modules():
            ffn.kernel = kernel

    def set_inference24(self, enabled: bool) -> None:
        """Keep the 2 largest of every 4 FFN activations (Y2, along features) in evaluation, for any FFN kind:
        the paper's sparse inference for Squared-ReLU; forced 2:4 for SwiGLU / ReLU / GELU, for context."""
        for ffn in self.ffn_modules():
            ffn.mask24_forward = enabled
