"""The generator interface generator-prior inversion attacks (GIFD, latent search) build on.

A ``SplitGenerator`` is a feed-forward ``nn.Module`` cut into stages. ``split_points`` names
the stage outputs an attack may optimise: the first is ``"latent"`` (the input itself, stage 0
of GIFD), the others are the outputs of the generator's intermediate blocks, which GIFD
optimises one after the other ("feature domain optimisation", Fang et al., ICCV 2023).
``head(z, s)`` runs up to and including split ``s``; ``tail(f, s)`` runs the rest, so
``tail(head(z, s), s)`` is ``forward(z)`` computed by the same operations in the same order.

Generators are priors, not trained here: they are built in eval mode (batch norm on its
running statistics, as the GIFD reference does with ``G.eval()``), so an image depends only on
its own latent, never on the other images of the batch, and their parameters do not require
gradients (an attack that tunes them, GIAS-style, turns that on explicitly).

Facts from the GIFD reference (ffhibnese/GIFD_Gradient_Inversion_Attack, read, not copied) for
the attack built on this: latents start as ``randn``; after every Adam step its
``SphericalOptimizer`` rescales each latent back to its initial l2 norm, the norm taken over
dims >= 2 (for a StyleGAN ``[N, 18, 512]`` latent: per style vector). For a DCGAN latent
``[N, 100, 1, 1]`` that convention would be per entry (only signs could change), so the norm
should be taken per image over ``latent_shape``. Generator outputs go to the model as
``((x + 1) / 2 - mean) / std`` (``to_model_input``); large generators are area-pooled to the
model's size. Feature deviations are kept in an l1 ball (``fedarena.attacks.inversion.l1_ball``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedarena.fl_core.data import Normalization

# ITU-R BT.601 luma, the weights PIL's ``convert("L")`` uses (R*299 + G*587 + B*114) / 1000,
# so an RGB generator feeding a grey model sees what a grey dataset loader would have made.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


class SplitGenerator(nn.Module):
    """A generator as an ordered list of stages; see the module docstring for the contract.

    Subclasses set ``self.main`` (an ``nn.Sequential``, whose state-dict layout is the
    checkpoint's), ``self._ends`` (for each split point, the index in ``main`` just after
    its last layer; 0 for ``"latent"``) and call ``_finish``.
    """

    latent_shape: tuple[int, ...]
    image_shape: tuple[int, int, int]
    output_range: tuple[float, float]
    split_points: tuple[str, ...]
    feature_shapes: dict[str, tuple[int, ...]]
    main: nn.Sequential

    def _init_layout(self, ends: dict[str, int], latent_shape: Sequence[int],
                     image_shape: Sequence[int], output_range: tuple[float, float]) -> None:
        if next(iter(ends), None) != "latent" or ends["latent"] != 0:
            raise ValueError(f"the first split point must be 'latent' at index 0, got {ends}")
        idx = list(ends.values())
        if idx != sorted(idx) or len(set(idx)) != len(idx) or idx[-1] >= len(self.main):
            raise ValueError(f"split indices must increase and end inside main ({len(self.main)} layers): {ends}")
        self._ends = dict(ends)
        self.split_points = tuple(ends)
        self.latent_shape = tuple(int(s) for s in latent_shape)
        self.image_shape = tuple(int(s) for s in image_shape)  # type: ignore[assignment]
        self.output_range = (float(output_range[0]), float(output_range[1]))
        with torch.no_grad():  # the real shapes, by running the layers once on a zero latent
            self.feature_shapes = {}
            f = torch.zeros((1, *self.latent_shape))
            was_training = self.training
            self.eval()
            prev = 0
            for name, end in ends.items():
                for layer in self.main[prev:end]:
                    f = layer(f)
                prev = end
                self.feature_shapes[name] = tuple(f.shape[1:])
            self.train(was_training)

    def _index(self, split: str) -> int:
        try:
            return self._ends[split]
        except KeyError:
            raise ValueError(f"{type(self).__name__} has no split point {split!r}; "
                             f"known: {', '.join(self.split_points)}") from None

    def head(self, z: Tensor, split: str) -> Tensor:
        """The feature at ``split``: the layers up to and including it, applied to ``z``."""
        end = self._index(split)
        f = z
        for layer in self.main[:end]:
            f = layer(f)
        return f

    def advance(self, feature: Tensor, start: str, end: str) -> Tensor:
        """The feature at split ``end`` from the feature at the earlier split ``start`` (GIFD
        initialises stage k's feature from stage k-1's optimised one this way)."""
        i, j = self._index(start), self._index(end)
        if j < i:
            raise ValueError(f"split {end!r} comes before {start!r}; {type(self).__name__}'s order is "
                             f"{', '.join(self.split_points)}")
        f = feature
        for layer in self.main[i:j]:
            f = layer(f)
        return f

    def tail(self, feature: Tensor, split: str) -> Tensor:
        """The image made from ``feature`` taken at ``split`` (every layer after it)."""
        start = self._index(split)
        f = feature
        for layer in self.main[start:]:
            f = layer(f)
        return self._to_image(f)

    def forward(self, z: Tensor) -> Tensor:
        return self.tail(z, "latent")

    def _to_image(self, out: Tensor) -> Tensor:
        """The last layer's output as ``[N, *image_shape]`` (an MLP's flat output is reshaped)."""
        return out.reshape(out.shape[0], *self.image_shape)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` latents from N(0, 1) of ``latent_shape``, drawn from ``generator``.

        Drawn on the generator's device (CPU for a CPU ``torch.Generator``, so a seed gives
        the same latents whatever device the model is on) and then moved to this module's
        device. GIFD, GGL and GIAS all start from ``randn`` latents.
        """
        if n < 1:
            raise ValueError(f"sample_latent needs n >= 1, got {n}")
        gen_device = generator.device if generator is not None else torch.device("cpu")
        z = torch.randn((n, *self.latent_shape), generator=generator, device=gen_device)
        return z.to(self.device)

    def to_model_input(self, images: Tensor, normalization: Normalization | None,
                       input_shape: Sequence[int]) -> Tensor:
        """Map generator outputs to what the FL model takes; differentiable throughout.

        1. ``output_range`` → [0, 1] (affine; tanh's [-1, 1] → ``(x + 1) / 2`` as GIFD does).
        2. Channels: RGB → grey by BT.601 luma (``LUMA_WEIGHTS``, PIL's rule); grey → RGB by
           repeating the channel; any other mismatch is an error.
        3. Size: bilinear (``align_corners=False``) with ``antialias=True``, so shrinking a
           64×64 face to 32×32 averages like an image library's resize instead of aliasing
           (GIFD area-pools its large generators for the same reason); upsampling is plain
           bilinear (antialias changes nothing there). Skipped when sizes already agree.
        4. The model's ``Normalization`` (``None``: the model takes [0, 1] pixels).
        """
        c, h, w = (int(s) for s in input_shape)
        if images.dim() != 4:
            raise ValueError(f"to_model_input takes [N, C, H, W] images, got {tuple(images.shape)}")
        lo, hi = self.output_range
        x = (images - lo) / (hi - lo)
        x = convert_channels(x, c)
        if tuple(x.shape[-2:]) != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        return normalization.normalize(x) if normalization is not None else x

    def extra_repr(self) -> str:
        return (f"latent_shape={self.latent_shape}, image_shape={self.image_shape}, "
                f"split_points={self.split_points}, output_range={self.output_range}")


def convert_channels(x: Tensor, channels: int) -> Tensor:
    """``[N, C, H, W]`` with ``C`` turned into ``channels``: RGB→grey by luma, grey→RGB by repeat."""
    have = x.shape[1]
    if have == channels:
        return x
    if have == 3 and channels == 1:
        weights = torch.as_tensor(LUMA_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * weights).sum(dim=1, keepdim=True)
    if have == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1)
    raise ValueError(f"cannot map {have}-channel generator images to a {channels}-channel model "
                     f"(only RGB→grey and grey→RGB are defined)")
