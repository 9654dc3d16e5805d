"""Vision Transformers with attention written out in matmuls: ViT-Tiny and the DIA reference's small ViT."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from fedarena.fl_core.models.base import check_common
from fedarena.fl_core.models.dropout import DropoutSite

POOLS = ("cls", "mean")
INITS = ("deit", "lucidrains")


class ViT(nn.Module):
    """Pre-norm Vision Transformer with a CLS token and learned position embeddings.

    Defaults are ViT-Tiny / DeiT-Tiny (Touvron et al. 2021): ``dim=192``, ``depth=12``,
    ``heads=3``, MLP ratio 4, GELU, LayerNorm eps 1e-6, qkv bias. ``patch_size`` must
    divide H and W; by default 4 for inputs up to 64 pixels (32×32 → 64 tokens) and
    16 (the ViT/DeiT value at 224×224) above. ``init="deit"``: as DeiT/timm,
    truncated-normal (std 0.02) linear weights, CLS token and position embeddings;
    zero biases. ``init="lucidrains"``: as lucidrains/vit-pytorch, N(0, 1) CLS token and
    position embeddings, PyTorch's default initialisation elsewhere.

    Attention is plain ``softmax(q kᵀ/√d_head) v`` in matmuls rather than fused SDPA so
    that double-backward (gradient-matching attacks), ``functional_call`` and
    ``vmap`` are guaranteed to work. ``dim_head`` (default ``dim // heads``) sets the
    per-head width; q, k, v have ``heads · dim_head`` features (lucidrains' ``inner_dim``,
    which need not equal ``dim``) and the output projection maps them back to ``dim``.
    ``pool="cls"`` classifies the CLS token, ``"mean"`` the mean over all tokens; the
    final LayerNorm is applied to the pooled vector (lucidrains' ``mlp_head``; for
    ``"cls"`` the same as normalising every token first, as timm does).

    The patch embedding is a ``Conv2d`` with kernel = stride = patch size. lucidrains'
    rearrange-then-``Linear(C·p·p, dim)`` is the same map (its weight is the conv kernel
    with the (channel, row, column) axes reordered) with the same parameter count and
    the same default initialisation (kaiming-uniform over fan-in C·p·p).

    Dropout (Scheliga et al. 2023 placement, as in the ViT of their DIA code, itself
    lucidrains/vit-pytorch), one ``DropoutSite`` each, all at rate ``dropout``: after
    the position embedding (``pos_drop``), on the attention probabilities
    (``attn_drop``), after the attention projection (``proj_drop``), after the MLP's
    GELU — before its second fully-connected layer — (``drop1``) and after that layer
    (``drop2``). No dropout before the head, as there.
    """

    label = "vit_tiny"  # the registry name errors are reported under

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
        dim_head: int | None = None,
        qkv_bias: bool = True,
        norm_eps: float = 1e-6,
        pool: str = "cls",
        init: str = "deit",
    ) -> None:
        super().__init__()
        label = self.label
        self.num_classes, self.input_shape, p = check_common(label, num_classes, input_shape, dropout)
        c, h, w = self.input_shape
        if patch_size is None:
            patch_size = 4 if max(h, w) <= 64 else 16
        for key, val in (("patch_size", patch_size), ("dim", dim), ("depth", depth), ("heads", heads)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{label}: {key} must be a positive int, got {val!r}")
        if h % patch_size or w % patch_size:
            raise ValueError(f"{label}: patch_size {patch_size} must divide the input height and width, got {h}x{w}")
        if dim_head is None:
            if dim % heads:
                raise ValueError(f"{label}: dim {dim} must be divisible by heads {heads} (or give dim_head)")
            dim_head = dim // heads
        elif isinstance(dim_head, bool) or not isinstance(dim_head, int) or dim_head < 1:
            raise ValueError(f"{label}: dim_head must be a positive int or None, got {dim_head!r}")
        hidden = int(dim * mlp_ratio)
        if hidden < 1:
            raise ValueError(f"{label}: mlp_ratio must give a positive MLP width, got {mlp_ratio!r}")
        if not isinstance(qkv_bias, bool):
            raise ValueError(f"{label}: qkv_bias must be a bool, got {qkv_bias!r}")
        if isinstance(norm_eps, bool) or not isinstance(norm_eps, int | float) or not norm_eps > 0:
            raise ValueError(f"{label}: norm_eps must be a positive number, got {norm_eps!r}")
        if pool not in POOLS:
            raise ValueError(f"{label}: pool must be one of {POOLS}, got {pool!r}")
        if init not in INITS:
            raise ValueError(f"{label}: init must be one of {INITS}, got {init!r}")
        self.patch_size, self.pool = patch_size, pool
        num_patches = (h // patch_size) * (w // patch_size)
        self.patch_embed = nn.Conv2d(c, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        self.pos_drop = DropoutSite(p)
        self.blocks = nn.Sequential(*(Block(dim, heads, dim_head, hidden, p, qkv_bias, norm_eps)
                                      for _ in range(depth)))
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.head = nn.Linear(dim, self.num_classes)
        if init == "lucidrains":
            nn.init.normal_(self.cls_token)
            nn.init.normal_(self.pos_embed)
            return
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # [B, N, dim]
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = self.blocks(self.pos_drop(torch.cat([cls, tokens], dim=1) + self.pos_embed))
        pooled = tokens[:, 0] if self.pool == "cls" else tokens.mean(dim=1)
        return self.head(self.norm(pooled))


class DIAViT(ViT):
    """The small ViT of the Dropout Inversion Attack's code (Scheliga et al. 2023) for 32×32 inputs.

    Defaults from dAI-SY-Group/DropoutInversionAttack at 37a3d4f: ``example_configs/
    models/ViT.yaml`` (lines 2–7: MLP width 256, patch 4, 4 layers, hidden 256, 16
    heads, dropout 0.25) through ``build_VisionTransformer`` in ``src/models/vit.py``
    (line 20: ``dim_head = hidden // heads`` = 16, so q, k, v have 256 features, not
    lucidrains' default 64 per head; lines 21–22: the same rate for every dropout
    site; ``pool`` is not passed, so lucidrains' ``"cls"``, line 107). From the vendored
    lucidrains code in that file: q, k, v without bias (line 71), an output projection
    with bias followed by dropout (lines 73–76; lucidrains drops it only for one head
    of width ``dim``), pre-norm ``nn.LayerNorm(dim)`` with PyTorch's eps 1e-5 (line
    41) and a LayerNorm on the pooled token before the head (lines 132–135, 148), the MLP
    Linear → GELU → dropout → Linear → dropout (lines 49–55), dropout after the
    position embedding (lines 143–144), N(0, 1) CLS token and position embeddings
    (lines 123–124) and PyTorch's default initialisation elsewhere (``init=
    "lucidrains"``). The reference's ``mlp_dim`` 256 is ``mlp_ratio`` 1 here. 1,612,554
    parameters on 3×32×32 with 10 classes. Its demo notebook (``DIA_demo.ipynb``) sets
    the rate to 0.5; the paper's text was not available to check against.
    """

    label = "vit_dia"

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        dropout: float = 0.25,
        patch_size: int | None = 4,
        dim: int = 256,
        depth: int = 4,
        heads: int = 16,
        mlp_ratio: float = 1.0,
        dim_head: int | None = None,
        qkv_bias: bool = False,
        norm_eps: float = 1e-5,
        pool: str = "cls",
        init: str = "lucidrains",
    ) -> None:
        super().__init__(num_classes, input_shape, dropout, patch_size, dim, depth, heads, mlp_ratio, dim_head,
                         qkv_bias, norm_eps, pool, init)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, heads: int, dim_head: int, hidden: int, p: float, qkv_bias: bool,
                 eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, dim_head, p, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, hidden, p)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Attention(nn.Module):
    """Multi-head self-attention with explicit matmuls (double-differentiable everywhere)."""

    def __init__(self, dim: int, heads: int, dim_head: int, p: float, qkv_bias: bool) -> None:
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.scale = dim_head ** -0.5
        self.qkv = nn.Linear(dim, 3 * heads * dim_head, bias=qkv_bias)
        self.attn_drop = DropoutSite(p)
        self.proj = nn.Linear(heads * dim_head, dim)
        self.proj_drop = DropoutSite(p)

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.dim_head).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # each [B, heads, N, d_head]
        attn = self.attn_drop(torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1))
        out = (attn @ v).transpose(1, 2).reshape(b, n, self.heads * self.dim_head)
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
