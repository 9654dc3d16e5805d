"""Checks and helpers every model family shares.

Every model validates its own arguments (so direct construction is as safe as
``build_model``) and computes its flatten sizes from ``input_shape``; these helpers
keep the error messages identical across families.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def dropout_layers(model: nn.Module) -> list[tuple[str, nn.Dropout]]:
    """The model's ``nn.Dropout`` modules as ``(qualified name, module)``, in definition order.

    Each dropout site is its own module so an attack that treats dropout masks as
    unknowns (Dropout Inversion, Scheliga et al. 2023) can hook each one separately;
    hooks also fire under ``torch.func.functional_call``.
    """
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Dropout)]


def mode_dependent(model: nn.Module) -> bool:
    """Whether ``model.train()`` vs ``model.eval()`` changes its forward pass.

    True when it has a BatchNorm (batch vs running statistics) or an active dropout
    layer. Lets a cache or a report say when the client's model mode is part of what
    an upload depends on, and when it is not (e.g. after Opacus swaps BatchNorm for
    GroupNorm).
    """
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm)
               or (isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0) for m in model.modules())


def check_common(
    model: str, num_classes: int, input_shape: Sequence[int], dropout: float
) -> tuple[int, tuple[int, int, int], float]:
    """Validate the arguments every model takes; return them normalised."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{model}: num_classes must be a positive int, got {num_classes!r}")
    shape = check_input_shape(model, input_shape)
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"{model}: dropout must be a rate in [0, 1), got {dropout!r}")
    return num_classes, shape, float(dropout)


def check_input_shape(model: str, input_shape: Sequence[int]) -> tuple[int, int, int]:
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = ()
    if len(shape) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape):
        raise ValueError(
            f"{model}: input_shape must be (channels, height, width) of positive ints, got {input_shape!r}"
        )
    return shape  # type: ignore[return-value]


def require_min_size(model: str, input_shape: tuple[int, int, int], minimum: int, why: str) -> None:
    """Raise a ValueError naming the model and its minimum input size."""
    _, h, w = input_shape
    if h < minimum or w < minimum:
        raise ValueError(f"{model} needs inputs of at least {minimum}x{minimum} pixels ({why}), got {h}x{w}")


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a convolution or pooling along one axis (PyTorch's floor rule)."""
    return (size + 2 * padding - kernel) // stride + 1
