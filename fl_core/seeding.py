"""One seed per run; every component derives its own independent stream from it."""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed for the component named by ``keys`` (e.g. ``("client", 3, "round", 7)``).

    Hashing the path keeps streams independent and stable: adding a component
    never shifts the numbers another component draws.
    """
    text = repr((int(seed), *keys)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def torch_generator(seed: int, *keys: object, device: str | torch.device = "cpu") -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, *keys))
    return gen


def numpy_rng(seed: int, *keys: object) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, *keys))
