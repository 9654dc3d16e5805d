"""Model poisoning: malicious clients replace their uploads (``craft(ctx) -> [m, d]``).

Each class is one colluding group's behaviour (``fedarena.fl_core.simulation.UpdateAttack``).
Omniscient attacks read the round's honest updates from ``RoundContext.honest`` (the
simulation's server-side hook); ``knowledge`` chooses what they estimate statistics
from: ``"honest"`` (the honest updates, falling back to the group's own benign updates
when there are none), ``"own"`` (only the group's own benign updates: partial
knowledge) or ``"all"`` (both). Colluding attacks send the same vector from every member.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist
from typing import Literal

import torch
from torch import Tensor

from fedarena.fl_core.geometry import gram, sq_distances_from_gram
from fedarena.fl_core.simulation import RoundContext

from ..registry import POISONING_ATTACKS

Knowledge = Literal["honest", "own", "all"]
Deviation = Literal["unit_vec", "std", "sign"]
ZRule = Literal["paper", "honest"]
Z_RULES: dict[str, str] = {"paper": "Φ⁻¹((n − s)/n)", "honest": "Φ⁻¹((n − f − s)/(n − f))"}


@POISONING_ATTACKS.register("sign_flip")
class SignFlip:
    """Sign flipping: send −scale × the honest mean (``source="honest_mean"``, the
    omniscient form) or −scale × the client's own update (``source="own"``, MUD-HoG's
    ``Attacker_Omniscient``; its default scale is 1)."""

    def __init__(self, scale: float = 1.0, source: Literal["honest_mean", "own"] = "honest_mean") -> None:
        if not scale > 0:
            raise ValueError(f"sign_flip: scale must be > 0, got {scale}")
        if source not in ("honest_mean", "own"):
            raise ValueError(f"sign_flip: source must be 'honest_mean' or 'own', got {source!r}")
        self.scale, self.source = float(scale), source

    def craft(self, ctx: RoundContext) -> Tensor:
        if self.source == "own":
            return -self.scale * ctx.own
        return _repeat(-self.scale * reference(ctx, "honest").mean(0), ctx)


@POISONING_ATTACKS.register("additive_noise")
class AdditiveNoise:
    """Additive Gaussian noise: each attacker sends its own update + N(mean, std²) per
    coordinate, MUD-HoG's ``Attacker_AddNoise_Grad`` (defaults mean 0, std 0.01 from its
    parser). ``replace=True`` sends the noise alone (the "Gaussian" Byzantine attack)."""

    def __init__(self, std: float = 0.01, mean: float = 0.0, replace: bool = False) -> None:
        if not std >= 0:
            raise ValueError(f"additive_noise: std must be >= 0, got {std}")
        self.std, self.mean, self.replace = float(std), float(mean), replace

    def craft(self, ctx: RoundContext) -> Tensor:
        noise = torch.randn(ctx.own.shape, generator=ctx.generator, dtype=ctx.own.dtype,
                            device=ctx.generator.device).to(ctx.own.device) * self.std + self.mean
        return noise if self.replace else ctx.own + noise


@POISONING_ATTACKS.register("alie")
class ALIE:
    """A Little Is Enough (Baruch et al. 2019); z_max by the paper's formula, z_rule='honest': the ports'.

    Baruch, Baruch & Goldberg, NeurIPS 2019, Algorithm 1.

    Every attacker sends μ − z·σ (per-coordinate mean and standard deviation of the
    known benign updates). ``z=None`` derives z_max from n (clients this round) and f
    (attackers this round) by ``alie_z`` with ``z_rule``: ``"paper"`` (default, Algorithm 1:
    z = Φ⁻¹((n − s)/n), s = ⌊n/2 + 1⌋ − f) or ``"honest"`` (the quantile among the n − f
    honest workers, z = Φ⁻¹((n − f − s)/(n − f)), as the ports compared against; see
    ``alie_z``). z(20, 4) is 0.385 by the paper, 0.157 by the ports. ``z_rule`` is kept on
    the instance and ``describe()`` names it, so a report can say which was used. The sign
    of the shift is a convention (μ − zσ here, as most implementations).
    """

    def __init__(self, z: float | None = None, knowledge: Knowledge = "honest",
                 z_rule: ZRule = "paper") -> None:
        if z is not None and not math.isfinite(z):
            raise ValueError(f"alie: z must be finite or None, got {z}")
        self.z, self.knowledge = z, _check_knowledge("alie", knowledge)
        self.z_rule = _check_z_rule(z_rule)

    def describe(self) -> str:
        """Which z the attack uses, for reports: ``z = 1.5 (given)`` or ``z_rule = paper: Φ⁻¹((n − s)/n)``."""
        if self.z is not None:
            return f"z = {self.z:g} (given)"
        return f"z_rule = {self.z_rule}: {Z_RULES[self.z_rule]}"

    def craft(self, ctx: RoundContext) -> Tensor:
        ref = reference(ctx, self.knowledge)
        z = self.z if self.z is not None else alie_z(ctx.num_clients, ctx.own.shape[0], self.z_rule)
        sigma = ref.std(0) if ref.shape[0] > 1 else torch.zeros_like(ref[0])
        return _repeat(ref.mean(0) - z * sigma, ctx)


@POISONING_ATTACKS.register("ipm")
class IPM:
    """Inner-product manipulation (Xie, Koyejo & Gupta, UAI 2019): every attacker sends
    −ε × the mean of the honest updates; ε = 0.1 (the paper's small-ε setting, which
    also beats median and Krum; ε = 100 flips the aggregate of a plain mean)."""

    def __init__(self, epsilon: float = 0.1, knowledge: Knowledge = "honest") -> None:
        if not epsilon > 0:
            raise ValueError(f"ipm: epsilon must be > 0, got {epsilon}")
        self.epsilon, self.knowledge = float(epsilon), _check_knowledge("ipm", knowledge)

    def craft(self, ctx: RoundContext) -> Tensor:
        return _repeat(-self.epsilon * reference(ctx, self.knowledge).mean(0), ctx)


class _GammaSearch:
    """Shared machinery of min-max / min-sum (Shejwalkar & Houmansadr, NDSS 2021, Alg. 1).

    Malicious update m(γ) = μ − γ·p with μ the benign mean and p the perturbation:
    ``unit_vec`` μ/‖μ‖, ``std`` the coordinate std, ``sign`` sign(μ) (the paper's
    ∇^p = −p). γ is the largest value meeting the attack's distance condition, found by
    the authors' halving search: start at ``gamma_init`` (10) with step γ_init/2; a
    success keeps γ and steps up, a failure steps down, the step halves each time, until
    the last success and the current γ differ by at most ``tol`` (1e-5). Every distance
    comes from one Gram matrix and two GEMVs: ‖m(γ) − h_i‖² = a_i + 2γ b_i + γ² c.
    """

    name = "gamma_search"

    def __init__(self, deviation: Deviation = "unit_vec", gamma_init: float = 10.0, tol: float = 1e-5,
                 knowledge: Knowledge = "honest") -> None:
        if deviation not in ("unit_vec", "std", "sign"):
            raise ValueError(f"{self.name}: deviation must be 'unit_vec', 'std' or 'sign', got {deviation!r}")
        if not gamma_init > 0 or not tol > 0:
            raise ValueError(f"{self.name}: gamma_init and tol must be > 0, got {gamma_init}, {tol}")
        self.deviation, self.gamma_init, self.tol = deviation, float(gamma_init), float(tol)
        self.knowledge = _check_knowledge(self.name, knowledge)
        self.last_gamma: float | None = None

    def craft(self, ctx: RoundContext) -> Tensor:
        ref = reference(ctx, self.knowledge)
        mu = ref.mean(0)
        p = perturbation(ref, mu, self.deviation)
        g = gram(ref).double()
        sq = g.diagonal()
        hp, hmu = (ref @ p).double(), (ref @ mu).double()
        mu_sq, p_sq, mu_p = float(mu.double().dot(mu.double())), float(p.double().dot(p.double())), float(
            mu.double().dot(p.double()))
        a = (sq - 2.0 * hmu + mu_sq).clamp_min(0.0)  # ‖μ − h_i‖²
        b = hp - mu_p  # ⟨μ − h_i, −p⟩ = ⟨h_i, p⟩ − ⟨μ, p⟩
        pair = sq_distances_from_gram(g)
        ok = self._condition(a, b, p_sq, pair)
        gamma = bisect_gamma(ok, self.gamma_init, self.tol)
        self.last_gamma = gamma
        return _repeat(mu - gamma * p, ctx)

    def _condition(self, a: Tensor, b: Tensor, c: float, pair: Tensor) -> Callable[[float], bool]:
        """Whether m(γ) passes, given a_i, b_i, c and the benign pairwise distances."""
        raise NotImplementedError


@POISONING_ATTACKS.register("min_max")
class MinMax(_GammaSearch):
    """Min-Max (Shejwalkar & Houmansadr 2021, Eq. 7): the malicious update's largest
    distance to any benign update stays within the largest benign–benign distance."""

    name = "min_max"

    def _condition(self, a: Tensor, b: Tensor, c: float, pair: Tensor) -> Callable[[float], bool]:
        bound = float(pair.max())
        return lambda gamma: float((a + 2.0 * gamma * b + gamma * gamma * c).max()) <= bound


@POISONING_ATTACKS.register("min_sum")
class MinSum(_GammaSearch):
    """Min-Sum (Shejwalkar & Houmansadr 2021): the malicious update's sum of squared
    distances to the benign updates stays within a benign update's such sum.

    ``bound="min"`` (default) follows the authors' released code (NDSS21 notebooks,
    ``our_attack_dist``/min-sum: ``scores`` the benign sums, ``min(scores)`` the bound):
    within the *smallest* benign sum. ``bound="max"`` follows the paper's Eq. 8 as
    printed (max over benign updates), a weaker constraint and so a stronger, less
    stealthy attack (γ 3.20 vs 2.92 on the unit-vector direction in issue 13's case).
    """

    name = "min_sum"

    def __init__(self, deviation: Deviation = "unit_vec", gamma_init: float = 10.0, tol: float = 1e-5,
                 knowledge: Knowledge = "honest", bound: Literal["min", "max"] = "min") -> None:
        super().__init__(deviation, gamma_init, tol, knowledge)
        if bound not in ("min", "max"):
            raise ValueError(f"min_sum: bound must be 'min' (the authors' code) or 'max' (Eq. 8), got {bound!r}")
        self.bound = bound

    def _condition(self, a: Tensor, b: Tensor, c: float, pair: Tensor) -> Callable[[float], bool]:
        sums = pair.sum(1)
        bound = float(sums.min() if self.bound == "min" else sums.max())
        return lambda gamma: float((a + 2.0 * gamma * b + gamma * gamma * c).sum()) <= bound


@POISONING_ATTACKS.register("model_replacement")
class ModelReplacement:
    """Model replacement / update boosting (Bagdasaryan et al., AISTATS 2020, Sec. 4.1):
    each attacker scales its own update by γ = n/η (n clients this round, η the server
    learning rate) so that averaging leaves the global model ≈ the attacker's model.
    Pair it with a data attack (e.g. ``backdoor``) in one ``Adversary``; ``scale`` fixes γ.
    """

    def __init__(self, scale: float | None = None, server_lr: float = 1.0) -> None:
        if scale is not None and not scale > 0:
            raise ValueError(f"model_replacement: scale must be > 0 or None, got {scale}")
        if not server_lr > 0:
            raise ValueError(f"model_replacement: server_lr must be > 0, got {server_lr}")
        self.scale, self.server_lr = scale, float(server_lr)

    def craft(self, ctx: RoundContext) -> Tensor:
        gamma = self.scale if self.scale is not None else ctx.num_clients / self.server_lr
        return gamma * ctx.own


def alie_z(n: int, f: int, rule: ZRule = "paper") -> float:
    """ALIE's z_max for n clients of which f attack: s = ⌊n/2 + 1⌋ − f supporters are needed.

    ``"paper"``: Baruch et al., Algorithm 1, z = Φ⁻¹((n − s)/n). ``"honest"``: z = Φ⁻¹((n − f − s)/(n − f)),
    the quantile among the honest workers, as in the ports other papers' ALIE numbers come from:
    Karimireddy, He & Jaggi's bucketing code (epfml/byzantine-robust-noniid-optimizer,
    ``codes/attacks/alittle.py``) and Blades (lishenghui/blades, ``blades/adversaries/alie_adversary.py``).
    """
    rule = _check_z_rule(rule)
    if not 0 < f < n:
        raise ValueError(f"alie: need 0 < f < n, got n={n}, f={f}")
    s = math.floor(n / 2 + 1) - f
    if s <= 0:
        raise ValueError(f"alie: with f={f} of n={n} attackers a majority needs no support (s={s} ≤ 0); "
                         "give z explicitly")
    if rule == "paper":
        return NormalDist().inv_cdf((n - s) / n)
    if s >= n - f:  # Φ⁻¹(p ≤ 0) is undefined: the honest clients alone cannot supply the support
        raise ValueError(f"alie: z_rule 'honest' needs s < n - f, got n={n}, f={f}, s={s}; give z explicitly")
    return NormalDist().inv_cdf((n - f - s) / (n - f))


def bisect_gamma(ok: Callable[[float], bool], gamma_init: float = 10.0, tol: float = 1e-5,
                 max_steps: int = 200) -> float:
    """Largest γ in (0, 2·gamma_init) with ``ok(γ)`` by the halving search, to within ~2·tol
    (0.0 if none passes)."""
    gamma, step, success = gamma_init, gamma_init / 2.0, 0.0
    for _ in range(max_steps):
        if abs(success - gamma) <= tol:
            break
        if ok(gamma):
            success = gamma
            gamma += step
        else:
            gamma -= step
        step /= 2.0
    return success


def perturbation(ref: Tensor, mu: Tensor, kind: Deviation) -> Tensor:
    """The direction min-max / min-sum push along (subtracted from μ)."""
    if kind == "unit_vec":
        return mu / torch.linalg.vector_norm(mu).clamp_min(1e-12)
    if kind == "std":
        return ref.std(0) if ref.shape[0] > 1 else torch.zeros_like(mu)
    return torch.sign(mu)


def reference(ctx: RoundContext, knowledge: Knowledge) -> Tensor:
    """The benign updates an attack estimates from (see the module docstring)."""
    if knowledge == "own" or ctx.honest.shape[0] == 0:
        return ctx.own
    if knowledge == "all":
        return torch.cat([ctx.honest, ctx.own])
    return ctx.honest


def _repeat(vector: Tensor, ctx: RoundContext) -> Tensor:
    return vector.to(ctx.own.dtype).unsqueeze(0).expand_as(ctx.own).clone()


def _check_z_rule(rule: str) -> ZRule:
    if rule not in Z_RULES:
        raise ValueError(f"alie: z_rule must be one of {sorted(Z_RULES)}, got {rule!r}")
    return rule  # type: ignore[return-value]


def _check_knowledge(name: str, knowledge: str) -> Knowledge:
    if knowledge not in ("honest", "own", "all"):
        raise ValueError(f"{name}: knowledge must be 'honest', 'own' or 'all', got {knowledge!r}")
    return knowledge  # type: ignore[return-value]
