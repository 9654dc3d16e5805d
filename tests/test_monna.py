"""MoNNA's pieces (Farhadkhani et al., ICML 2023): client momentum + nearest-neighbour averaging.

A synthetic quadratic federation (client i's gradient at θ is θ − c_i plus seeded noise)
run through the real ``Simulation`` with ``ClientMomentum``, ``nnm ∘ fedavg`` and an
omniscient attacker, checked against a hand-written loop of the authors' algorithm in its
server form (``peerToPeer.py``: ``m.mul_(β).add_(g, alpha=1 − β)`` from zero per worker;
the attack built from the honest momentums; every vector replaced by the mean of its
n − f nearest, ``cva.py``; θ ← θ − γ·mean).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fedarena import defenses  # noqa: F401  (registers the aggregators)
from fedarena.attacks.poisoning import ALIE, SignFlip
from fedarena.benchmarks.reproductions.robustness.bench_monna import build_rule, lr_at
from fedarena.defenses.registry import AGGREGATORS
from fedarena.fl_core import Adversary, Client, FederationConfig, ImageDataset, LocalTraining, Simulation
from fedarena.fl_core.data import Normalization
from fedarena.fl_core.protocol import ClientMomentum
from fedarena.fl_core.seeding import torch_generator
from fedarena.fl_core.updates import ClientUpdate, PrivateData
from fedarena.fl_core.vectors import model_to_vector

N, F, D, SIGMA = 8, 2, 6, 0.5


def _centres(spread: float) -> Tensor:
    return torch.randn(N, D, generator=torch.Generator().manual_seed(7)) * spread


def _quadratic_trainer(centres: Tensor):
    def trainer(model: nn.Module, state, client_id: int, data: ImageDataset, training: LocalTraining,
                generator: torch.Generator) -> tuple[ClientUpdate, PrivateData]:
        noise = torch.randn(D, generator=generator) * SIGMA
        grad = state.params - centres[client_id] + noise
        return ClientUpdate(client_id, grad, "gradient", 4), PrivateData(data.images[:1], data.labels[:1])
    return trainer


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(D - 1, 1)  # D parameters; only its parameter vector matters


def _simulate(beta: float, rule: str, attack, rounds: int, lr: float, spread: float = 1.0) -> Tensor:
    data = ImageDataset("quadratic", torch.zeros(4, 1, 1, 1), torch.zeros(4, dtype=torch.long), 2,
                        Normalization((0.0,), (1.0,)))
    clients = [Client(cid, data, "honest" if cid >= F else "attacker") for cid in range(N)]
    local = LocalTraining(algorithm="fedsgd", lr=lr, batch_size=4)
    sim = Simulation(_model(), clients, FederationConfig(rounds=rounds, local=local, seed=3),
                     aggregator=build_rule(rule, F), trainer=_quadratic_trainer(_centres(spread)),
                     adversaries=[Adversary(list(range(F)), None, attack, name="attacker")],
                     protocol=ClientMomentum(beta), progress=False)
    sim.run()
    return model_to_vector(sim.model)


def _reference(beta: float, rounds: int, lr: float) -> Tensor:
    """The authors' loop (server form): honest momentums, sign flip of their mean, NNA, mean, step."""
    centres = _centres(1.0)
    theta = model_to_vector(_model()).clone()
    momentum = [torch.zeros(D) for _ in range(N)]
    for r in range(rounds):
        for cid in range(N):
            noise = torch.randn(D, generator=torch_generator(3, "client", cid, "round", r)) * SIGMA
            grad = theta - centres[cid] + noise
            momentum[cid].mul_(beta).add_(grad, alpha=1 - beta)
        byz = -torch.stack(momentum[F:]).mean(0)
        vectors = [byz.clone() for _ in range(F)] + momentum[F:]
        mixed = []
        for v in vectors:  # cva.py: the n − f vectors closest to v (itself included), averaged
            order = sorted(range(N), key=lambda j: float((vectors[j] - v).norm()))
            mixed.append(torch.stack([vectors[j] for j in order[: N - F]]).mean(0))
        theta = theta - lr * torch.stack(mixed).mean(0)
    return theta


def test_client_momentum_with_nna_matches_the_authors_loop_under_sign_flip() -> None:
    for beta in (0.0, 0.9):
        got = _simulate(beta, "nna", SignFlip(), rounds=12, lr=0.3)
        assert torch.allclose(got, _reference(beta, rounds=12, lr=0.3), atol=1e-5), beta
    assert not torch.allclose(_simulate(0.9, "nna", SignFlip(), 12, 0.3), _reference(0.0, 12, 0.3), atol=1e-3)


def test_momentum_shrinks_the_alie_deviation_under_robust_rules() -> None:
    """The paper's mechanism: momentum cuts the honest spread ALIE hides in (variance ×(1 − β)/(1 + β)),
    so with every client aiming at one optimum the attacked model ends closer to it with β = 0.9."""
    for rule in ("nna", "trimmed_mean", "geometric_median"):
        errors = {beta: float(_simulate(beta, rule, ALIE(z=1.5), rounds=80, lr=0.1, spread=0.0).norm())
                  for beta in (0.0, 0.9)}
        assert errors[0.9] < 0.6 * errors[0.0], (rule, errors)


def test_nna_rule_is_nnm_mixing_then_the_plain_mean() -> None:
    rule = build_rule("nna", 1)
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [50.0, 50.0]])
    res = rule(x, torch.ones(4), [0, 1, 2, 3])
    near = {0: [0, 1, 2], 1: [1, 0, 2], 2: [2, 0, 1], 3: [3, 1, 2]}  # the n − f = 3 nearest of each row
    expected = torch.stack([x[idx].mean(0) for idx in near.values()]).mean(0)
    assert torch.allclose(res.aggregate, expected)
    assert AGGREGATORS.build("trimmed_mean", f=1).f == build_rule("trimmed_mean", 1).f == 1


def test_learning_rate_schedule_is_the_references_hyperbolic_decay() -> None:
    assert [lr_at(t, 0.75, 50) for t in (0, 49, 50, 99, 100, 599)] == [0.75, 0.75, 0.375, 0.375, 0.25, 0.75 / 12]
    assert lr_at(500, 0.75, 0) == 0.75
