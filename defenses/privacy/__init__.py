"""Privacy defenses: DP-SGD, client-level DP (DP-FedAvg) and update perturbations.

Importing this package registers, in ``fedarena.defenses.registry.PRIVACY_DEFENSES``, one
factory per defense; each returns a ``ClientDefense`` (a local trainer, transforms of
the upload and/or a server aggregator). Parameter names and defaults are the
factories' keyword arguments, documented with their sources in the modules.

The harness must
- build the federation with ``prepare_model(defense, model)`` (DP-SGD needs a model
  Opacus can train privately: BatchNorm → GroupNorm; others return the model as is);
- for an adaptive attacker, pass ``attacker_view(defense, observed_vector)`` (a plain
  ``Callable[[Tensor], Tensor]`` on flat gradients, or None when the defense has no
  deterministic part) to the inversion attack;
- read the privacy spent only through ``defense_epsilon(defense, delta)`` (add/remove
  adjacency, every part's default) or ``defense_epsilons(defense, delta)`` (``{adjacency:
  ε}`` for each adjacency the defense accounts: local DP-FedAvg adds ``"replace"``), and
  print the adjacency with the number: every part that spends budget (``DPSGD``,
  ``LocalDPNoise``, ``DPFedAvgAggregator``) is an ``Accountant`` (``epsilon(delta,
  adjacency)``, ``client_epsilons(delta, adjacency)``, ``delta``, ``adjacencies``).
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from ..registry import PRIVACY_DEFENSES, ClientDefense
from .accounting import ADJACENCIES, DEFAULT_ADJACENCY, Accountant, Adjacency, defense_epsilon, defense_epsilons
from .dp_fedavg import DPFedAvgAggregator, LocalDPNoise, dp_fedavg_epsilon
from .dp_sgd import DPSGD, check_dp_compatible, make_dp_compatible, steps_per_round
from .on_update import apply_defense
from .perturbations import (
    AdaptiveTransform,
    Clipping,
    GaussianNoise,
    GradientView,
    LaplaceNoise,
    Pruning,
    Quantization,
    attackers_view,
    clip_to_norm,
    top_k_mask,
)

__all__ = [
    "ADJACENCIES", "DEFAULT_ADJACENCY", "Accountant", "Adjacency", "defense_epsilon", "defense_epsilons",
    "DPSGD", "DPFedAvgAggregator", "LocalDPNoise", "dp_fedavg_epsilon", "apply_defense",
    "make_dp_compatible", "check_dp_compatible", "steps_per_round", "AdaptiveTransform", "Clipping", "GaussianNoise",
    "GradientView",
    "LaplaceNoise", "Pruning", "Quantization", "attackers_view", "clip_to_norm", "top_k_mask", "attacker_view",
    "prepare_model", "dp_sgd", "dp_fedavg", "gaussian_noise", "laplace_noise", "clipping", "pruning", "quantization",
]


def attacker_view(defense: ClientDefense, observed: Tensor) -> GradientView | None:
    """What an adaptive attacker applies to its dummy gradients against ``defense`` (None: naive)."""
    return attackers_view(defense.transforms, observed)


def prepare_model(defense: ClientDefense, model: nn.Module) -> nn.Module:
    """The global model to build the federation with under ``defense``."""
    prepare = getattr(defense.trainer, "prepare_model", None)
    return prepare(model) if callable(prepare) else model


@PRIVACY_DEFENSES.register("dp_sgd")
def dp_sgd(noise_multiplier: float | None = 1.0, max_grad_norm: float = 1.0, target_epsilon: float | None = None,
           planned_rounds: int | None = None, delta: float = 1e-5, accountant: str = "rdp") -> ClientDefense:
    """Record-level DP-SGD in each client's local training, through Opacus (Abadi et al. 2016)."""
    return ClientDefense(trainer=DPSGD(noise_multiplier, max_grad_norm, target_epsilon=target_epsilon,
                                       planned_rounds=planned_rounds, delta=delta, accountant=accountant))


@PRIVACY_DEFENSES.register("dp_fedavg")
def dp_fedavg(clip_norm: float = 1.0, noise_multiplier: float = 1.0, mode: Literal["central", "local"] = "central",
              clients_per_round: int | None = None, num_clients: int | None = None, seed: int = 0,
              delta: float = 1e-5, accountant: str = "rdp") -> ClientDefense:
    """Client-level DP: clip each update, Gaussian noise on the aggregate or on each update (McMahan et al. 2018)."""
    if mode == "local":
        return ClientDefense(transforms=[LocalDPNoise(clip_norm, noise_multiplier, delta=delta, accountant=accountant)])
    if mode != "central":
        raise ValueError(f"dp_fedavg: mode must be 'central' or 'local', got {mode!r}")
    if clients_per_round is None or num_clients is None:
        raise ValueError("dp_fedavg: central mode needs clients_per_round and num_clients (they set the "
                         "sampling rate of the accountant and the denominator of the noisy mean)")
    aggregator = DPFedAvgAggregator(clip_norm, noise_multiplier, expected_clients=clients_per_round,
                                    num_clients=num_clients, seed=seed, delta=delta, accountant=accountant)
    return ClientDefense(transforms=[Clipping(clip_norm)], aggregator=aggregator)


@PRIVACY_DEFENSES.register("gaussian_noise")
def gaussian_noise(sigma: float) -> ClientDefense:
    """Add N(0, σ²) to every coordinate of the upload (Zhu et al. 2019)."""
    return ClientDefense(transforms=[GaussianNoise(sigma)])


@PRIVACY_DEFENSES.register("laplace_noise")
def laplace_noise(scale: float) -> ClientDefense:
    """Add Laplace(0, scale) noise to every coordinate of the upload (Zhu et al. 2019)."""
    return ClientDefense(transforms=[LaplaceNoise(scale)])


@PRIVACY_DEFENSES.register("clipping")
def clipping(max_norm: float) -> ClientDefense:
    """Scale the upload to L2 norm <= max_norm."""
    return ClientDefense(transforms=[Clipping(max_norm)])


@PRIVACY_DEFENSES.register("pruning")
def pruning(fraction: float) -> ClientDefense:
    """Keep the largest-magnitude ``fraction`` of the upload's coordinates, zero the rest (gradient
    sparsification; ``fraction=0.1`` keeps 10 % and prunes 90 %).

    ``fraction`` is the share of coordinates kept, in (0, 1], not the share removed: DLG's
    literature (Zhu et al. 2019, Sec. 5) speaks of a prune *ratio* p, the share set to zero,
    which is ``fraction = 1 − p`` here (their 20 % pruned is ``fraction=0.8``). See ``Pruning``."""
    return ClientDefense(transforms=[Pruning(fraction)])


@PRIVACY_DEFENSES.register("quantization")
def quantization(bits: int, stochastic: bool = True) -> ClientDefense:
    """Uniform per-vector quantization of the upload to `bits` bits, stochastic rounding by default."""
    return ClientDefense(transforms=[Quantization(bits, stochastic)])
