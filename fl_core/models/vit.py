"""A small Vision Transformer (ViT-Tiny / DeiT-Tiny) with attention written out in matmuls."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from fl_core.models.base import check_common
from fl_core.models.dropout import DropoutSite


class ViT(nn.Module):
    """Pre-norm Vision Transformer with a CLS token and learned position embeddings.

    Defaults are ViT-Tiny / DeiT-Tiny (Touvron et al. 2021): ``dim=192``, ``depth=12``,
    ``heads=3``, MLP ratio 4, GELU, LayerNorm eps 1e-6, qkv bias. ``patch_size`` must
    divide H and W; by default 4 for inputs up to 64 pixels (32×32 → 64 tokens) and
    16 (the ViT/DeiT value at 224×224) above. Init as DeiT/timm: truncated-normal
    (std 0.02) linear weights, CLS token and position embeddings; zero biases.

    Attention is plain ``softmax(q kᵀ/√d) v`` in matmuls rather than fused SDPA so
    that double-backward (gradient-matching attacks), ``functional_call`` and
    ``vmap`` are guaranteed to work.

    Dropout (Scheliga et al. 2023 placement, as in the ViT of their DIA code, itself
    lucidrains/vit-pytorch): after the position embedding (``pos_drop``), on the
    attention probabilities (``attn_drop``), after the attention projection
    (``proj_drop``), after the MLP's GELU — before its second fully-connected layer —
    (``drop1``) and after that layer (``drop2``). No dropout before the head, as there.
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        dropout: float = 0.0,
        patch_size: int | None = None,
        dim: int = 192,
        depth: int = 12,
        heads: int = 3,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.num_classes, self.input_shape, p = check_common("vit_tiny", num_classes, input_shape, dropout)
        c, h, w = self.input_shape
        if patch_size is None:
            patch_size = 4 if max(h, w) <= 64 else 16
        for key, val in (("patch_size", patch_size), ("dim", dim), ("depth", depth), ("heads", heads)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"vit_tiny: {key} must be a positive int, got {val!r}")
        if h % patch_size or w % patch_size:
            raise ValueError(f"vit_tiny: patch_size {patch_size} must divide the input height and width, got {h}x{w}")
        if dim % heads:
            raise ValueError(f"vit_tiny: dim {dim} must be divisible by heads {heads}")
        hidden = int(dim * mlp_ratio)
        if hidden < 1:
            raise ValueError(f"vit_tiny: mlp_ratio must give a positive MLP width, got {mlp_ratio!r}")
        self.patch_size = patch_size
        num_patches = (h // patch_size) * (w // patch_size)
        self.patch_embed = nn.Conv2d(c, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        self.pos_drop = DropoutSite(p)
        self.blocks = nn.Sequential(*(Block(dim, heads, hidden, p) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, self.num_classes)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # [B, N, dim]
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = self.pos_drop(torch.cat([cls, tokens], dim=1) + self.pos_embed)
        tokens = self.norm(self.blocks(tokens))
        return self.head(tokens[:, 0])


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, heads: int, hidden: int, p: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, p)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden, p)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Attention(nn.Module):
    """Multi-head self-attention with explicit matmuls (double-differentiable everywhere)."""

    def __init__(self, dim: int, heads: int, p: float) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_drop = DropoutSite(p)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = DropoutSite(p)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # each [B, heads, N, d_head]
        attn = self.attn_drop(torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1))
        out = (attn @ v).transpose(1, 2).reshape(b, n, d)
        return self.proj_drop(self.proj(out))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, p: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = DropoutSite(p)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = DropoutSite(p)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))
