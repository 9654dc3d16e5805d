"""The one state-dict ⇄ flat-vector conversion (DESIGN: parameters as vectors).

Aggregators and poisoning attacks see one ``[d]`` float tensor per client; attacks
that differentiate through the model need the inverse as *views* so autograd flows.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class ParameterLayout:
    """Names, shapes and offsets of a model's trainable parameters in the flat vector."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]

    @classmethod
    def of(cls, model: nn.Module, names: Collection[str] | None = None) -> ParameterLayout:
        """The model's trainable parameters, or only those in ``names`` (a sub-model a
        protocol shares), always in the model's own order."""
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if names is not None:
            unknown = sorted(set(names) - {n for n, _ in named})
            if unknown:
                raise KeyError(f"{type(model).__name__} has no trainable parameters {unknown}")
            named = [(n, p) for n, p in named if n in names]
        return cls(tuple(n for n, _ in named), tuple(p.shape for _, p in named))

    @property
    def numels(self) -> tuple[int, ...]:
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def dim(self) -> int:
        return sum(self.numels)

    def flatten(self, tensors: Mapping[str, Tensor] | Iterable[Tensor]) -> Tensor:
        """Concatenate tensors (a name→tensor mapping or a sequence in layout order)."""
        if isinstance(tensors, Mapping):
            missing = [n for n in self.names if n not in tensors]
            if missing:
                raise KeyError(f"state dict lacks parameters {missing}")
            seq = [tensors[n] for n in self.names]
        else:
            seq = list(tensors)
            if len(seq) != len(self.names):
                raise ValueError(f"expected {len(self.names)} tensors, got {len(seq)}")
        return torch.cat([t.reshape(-1) for t in seq])

    def unflatten(self, vector: Tensor) -> dict[str, Tensor]:
        """Name → view into ``vector`` (differentiable; usable with ``functional_call``)."""
        check_vector(vector, self.dim)
        chunks = torch.split(vector, self.numels)
        return {n: c.view(s) for n, c, s in zip(self.names, chunks, self.shapes, strict=True)}


    def index_in(self, full: ParameterLayout) -> Tensor:
        """Positions of this layout's entries in the flat vector of ``full`` (a superset)."""
        offsets = dict(zip(full.names, _offsets(full.numels), strict=True))
        missing = [n for n in self.names if n not in offsets]
        if missing:
            raise KeyError(f"parameters {missing} are not in the full layout")
        parts = [torch.arange(offsets[n], offsets[n] + k) for n, k in zip(self.names, self.numels, strict=True)]
        return torch.cat(parts) if parts else torch.empty(0, dtype=torch.long)


def _offsets(numels: Iterable[int]) -> list[int]:
    out, total = [], 0
    for k in numels:
        out.append(total)
        total += k
    return out


def check_vector(vector: Tensor, dim: int) -> None:
    if not isinstance(vector, Tensor) or vector.dim() != 1 or vector.numel() != dim:
        shape = tuple(vector.shape) if isinstance(vector, Tensor) else type(vector).__name__
        raise ValueError(f"expected a flat vector of shape ({dim},), got {shape}")


def model_to_vector(model: nn.Module) -> Tensor:
    """Detached copy of the model's trainable parameters as one flat vector."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad])


def grads_to_vector(model: nn.Module) -> Tensor:
    """Flat vector of ``.grad`` (zeros where a parameter received none)."""
    return torch.cat(
        [
            (p.grad if p.grad is not None else torch.zeros_like(p)).detach().reshape(-1)
            for p in model.parameters()
            if p.requires_grad
        ]
    )


@torch.no_grad()
def vector_to_model(vector: Tensor, model: nn.Module) -> None:
    """Copy a flat vector into the model's trainable parameters, in place."""
    params = [p for p in model.parameters() if p.requires_grad]
    check_vector(vector, sum(p.numel() for p in params))
    if not params:  # a frozen model: nothing to write
        return
    chunks = torch.split(vector.to(params[0].device), [p.numel() for p in params])
    torch._foreach_copy_(params, [c.view_as(p) for c, p in zip(chunks, params, strict=True)])


def buffers_to_vector(model: nn.Module) -> Tensor | None:
    """Float buffers (BatchNorm running statistics) as one vector, or None if the model has none."""
    bufs = [b.detach().reshape(-1) for b in model.buffers() if b.is_floating_point()]
    return torch.cat(bufs) if bufs else None


@torch.no_grad()
def vector_to_buffers(vector: Tensor, model: nn.Module) -> None:
    bufs = [b for b in model.buffers() if b.is_floating_point()]
    check_vector(vector, sum(b.numel() for b in bufs))
    for b, chunk in zip(bufs, torch.split(vector, [b.numel() for b in bufs]), strict=True):
        b.copy_(chunk.view_as(b))
