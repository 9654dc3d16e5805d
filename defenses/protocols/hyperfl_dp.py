"""HyperFL's local round under record-level DP-SGD: the ``hyperfl`` protocol composed with
the ``dp_sgd`` defense (``HyperFL.local_trainer`` returns ``PrivateHyperFLRound`` when the
trainer is a ``DPSGD``).

What is privatised, and why all of it. Every parameter the round trains is updated only
by DP-SGD steps: the head in the head phase, the hypernetwork *and the embedding* in the
hypernetwork phase, all three in a FedSGD round. Each step takes a Poisson batch
(Opacus' ``UniformWithReplacementSampler``, rate q = 1/⌈n / batch_size⌉, the rate
``DPSGD`` uses), clips each sample's gradient over the step's parameters jointly to C
(Opacus' flat clipping: factor min(1, C / (‖g_i‖ + 1e-6))), sums, adds Gaussian noise of
std σ·C to every coordinate and divides by the expected batch size (Opacus' mean
reduction). The embedding and head a client keeps are then post-processing of DP
releases, so the ε its ``DPSGD`` accountant reports covers the whole sequence of uploads
*and* the private state. The alternatives fail: an embedding or head trained on clean
gradients carries unnoised information about the data into the next round's upload
(the hypernetwork delta is computed at them), so ε would not hold for round 2 onwards;
freezing them is not HyperFL. After the noise, HyperFL's own steps follow unchanged —
the reference's norm-50 clip per group, weight decay, momentum — as post-processing.

Why not Opacus' ``GradSampleModule``: it forms per-sample gradients from a layer's batch
of inputs, and the hypernetwork's layers see one embedding, not the batch. The
per-sample gradients of the hypernetwork are chain-rule products through the generated
weights instead. With ``g_ik = ∂L_i/∂W_k`` (the per-sample gradients of the generated
tensors, ``torch.func.vmap`` over ``torch.func.grad`` of the target network) and ``h =
mlp(e)``: head k's weight gradient is ``g_ik ⊗ h`` (norm ``‖g_ik‖·‖h‖``), its bias
gradient ``g_ik``; the MLP's and the embedding's are one ``vjp`` of the MLP with
cotangent ``u_i = Σ_k A_kᵀ g_ik``, vmapped over i. A per-sample norm thus costs the
target's per-sample gradients and one ``[B, generated] × [generated, hidden]`` product,
and the clipped sum stays rank one per head, ``(Σ_i c_i g_ik) ⊗ h``: no ``[B, 15M]``
tensor is formed (tested against per-sample autograd). Only the noise is dense: one
Gaussian draw per hypernetwork coordinate per step, into the buffers ``_HeadGradients``
reuses over the round.

Accounting: a round is ``head_epochs·⌊1/q⌋`` head steps plus ``epochs·⌊1/q⌋`` (or
``LocalTraining.steps``) hypernetwork steps at the same (σ, q), or one step for FedSGD,
charged to the client's accountant in the ``DPSGD`` (``DPSGD.spend``), which the harness
reads for ε; ``target_epsilon`` plans σ over that step count (``noise_multiplier_for``).
The expected batch size is ``max(1, round(n·q))``: Opacus' ``int(n·q)`` truncates to 0 for
some n at batch size 1 (49·(1/49) < 1 in floating point) and then divides by zero. The
upload's metadata carries no training loss (an unnoised statistic of the data).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import cast

import torch
from opacus.utils.uniform_sampler import UniformWithReplacementSampler
from torch import Tensor, nn
from torch.func import functional_call, grad, vjp, vmap

from fedarena.defenses.privacy.dp_sgd import DPSGD, check_dp_compatible, steps_per_round
from fedarena.fl_core.client import GlobalState, LossFn, first_use_order, load_state
from fedarena.fl_core.data import ImageDataset
from fedarena.fl_core.updates import ClientUpdate, LocalTraining, PrivateData
from fedarena.fl_core.vectors import buffers_to_vector, grads_to_vector, model_to_vector

from .hyperfl import HyperFL, HyperFLNet, _decay_, _HeadGradients, _set_grads, _sgd


class PrivateHyperFLRound:
    """``protocol``'s local round (head, then hypernetwork and embedding; or FedSGD) as
    DP-SGD with ``dp``'s σ, C and accountant: a ``LocalTrainer`` (module docstring)."""

    def __init__(self, protocol: HyperFL, dp: DPSGD) -> None:
        self.protocol, self.dp = protocol, dp

    def __call__(self, model: nn.Module, state: GlobalState, client_id: int, data: ImageDataset,
                 training: LocalTraining, generator: torch.Generator) -> tuple[ClientUpdate, PrivateData]:
        if not isinstance(model, HyperFLNet):
            raise TypeError(f"hyperfl + dp_sgd: the trainer needs a HyperFLNet, got {type(model).__name__}")
        check_dp_compatible(model.target)
        fedsgd = training.algorithm == "fedsgd"
        if not fedsgd and training.optimizer != "sgd":
            raise ValueError("hyperfl: the local round is the reference's SGD epochs; use optimizer='sgd' "
                             f"(got {training.optimizer!r})")
        n = len(data)
        if n == 0:
            raise ValueError(f"hyperfl + dp_sgd: client {client_id} has no data to train on")
        load_state(model, state)
        model.train(training.model_mode == "train")
        device = model.embedding.device
        sampling_seed, noise_seed = torch.randint(0, 2**62, (2,), generator=generator,
                                                  device=generator.device).tolist()
        rate = 1 / math.ceil(n / training.batch_size)
        per_epoch = int(1 / rate)  # Opacus' sampler length
        head_steps = 0 if fedsgd else self.protocol.head_epochs * per_epoch
        hyper_steps = steps_per_round(n, training)  # FedSGD: 1; else LocalTraining.steps or epochs × ⌊1/q⌋
        sigma = self.dp.noise_multiplier_for(client_id, rate, head_steps + hyper_steps)
        noisy = _NoisySum(self.dp.max_grad_norm, sigma, max(1, round(n * rate)),
                          torch.Generator(device=device).manual_seed(noise_seed))
        sampler = _poisson_batches(n, rate, torch.Generator().manual_seed(sampling_seed))
        inputs, labels = data.normalized().to(device), data.labels.to(device)
        loss_fn = self.protocol.loss_fn
        used: list[Tensor] = []
        if fedsgd:
            kept = self.protocol.private_parameters(model)
            idx = next(sampler)
            _hypernetwork_gradients(model, inputs[idx], labels[idx], loss_fn, noisy, with_head=True)
            vector = grads_to_vector(model)
            used.append(idx)
            num_samples, kind = noisy.expected_batch, "gradient"
        else:
            if head_steps:
                used += _head_phase(model, inputs, labels, loss_fn, noisy, sampler, head_steps,
                                    replace(self.protocol.head_training, batch_size=training.batch_size))
            kept = self.protocol.private_parameters(model)  # what the hypernetwork phase runs with
            used += _hypernetwork_phase(model, inputs, labels, loss_fn, noisy, sampler, hyper_steps, training,
                                        self.protocol.clip_norm)
            vector = model_to_vector(model) - state.params
            num_samples, kind = n, "delta"
        for p in model.parameters():
            p.grad = None
        steps = head_steps + hyper_steps
        self.dp.spend(client_id, sigma, rate, steps)
        meta = {**self.dp.round_metadata(client_id, sigma, rate, steps),
                "hypernetwork_params": sum(p.numel() for p in model.hypernetwork.parameters())}
        update = ClientUpdate(client_id, vector, kind, num_samples, meta, buffers_to_vector(model))
        # FedSGD: the batch itself, in its own order (as DPSGD's FedSGD round)
        order = used[0] if fedsgd else first_use_order(used, n)
        return update, PrivateData(inputs[order], labels[order], parameters=kept)


def per_sample_gradients(target: nn.Module, fixed: dict[str, Tensor], free: dict[str, Tensor], x: Tensor,
                         y: Tensor, loss_fn: LossFn) -> dict[str, Tensor]:
    """``{name: [B, *shape]}``: each sample's gradient of its loss w.r.t. the ``free``
    parameters of ``target`` (``fixed`` the rest), by ``torch.func.vmap`` over ``grad``;
    dropout draws a mask per sample, as the sample would see alone."""
    def loss_of(params: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        return loss_fn(functional_call(target, {**fixed, **params}, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    return vmap(grad(loss_of), in_dims=(None, 0, 0), randomness="different")(free, x, y)


def clip_factors(norms: Tensor, max_norm: float) -> Tensor:
    """Opacus' per-sample clip factors ``min(1, C / (‖g_i‖ + 1e-6))``."""
    return (max_norm / (norms + 1e-6)).clamp(max=1.0)


class _NoisySum:
    """The Gaussian mechanism of one DP-SGD step: ``(clipped sum + N(0, (σC)²)) / expected batch``."""

    def __init__(self, max_norm: float, sigma: float, expected_batch: int, generator: torch.Generator) -> None:
        self.max_norm, self.std, self.expected_batch = max_norm, sigma * max_norm, expected_batch
        self.generator = generator

    def __call__(self, clipped_sum: Tensor) -> Tensor:
        """The noisy mean of ``clipped_sum`` (a new tensor)."""
        out = torch.empty_like(clipped_sum)
        if self.std:
            out.normal_(0.0, self.std, generator=self.generator).add_(clipped_sum)
        else:
            out.copy_(clipped_sum)
        return out.div_(self.expected_batch)

    def rank_one(self, left: Tensor, right: Tensor, out: Tensor) -> Tensor:
        """The noisy mean of ``left ⊗ right`` in ``out`` without forming the outer product apart
        (noise, then ``addr_``): a hypernetwork head's clipped sum, in its reused buffer."""
        if self.std:
            out.normal_(0.0, self.std, generator=self.generator)
        else:
            out.zero_()
        return out.addr_(left, right).div_(self.expected_batch)


def _poisson_batches(n: int, rate: float, generator: torch.Generator) -> Iterator[Tensor]:
    """Poisson batches for ever (Opacus' sampler, one ``⌊1/q⌋``-step pass after another)."""
    sampler = UniformWithReplacementSampler(num_samples=n, sample_rate=rate, generator=generator)
    while True:
        for indices in sampler:
            yield torch.as_tensor(indices, dtype=torch.long)


def _head_phase(model: HyperFLNet, inputs: Tensor, labels: Tensor, loss_fn: LossFn, noisy: _NoisySum,
                sampler: Iterator[Tensor], steps: int, head_cfg: LocalTraining) -> list[Tensor]:
    """The head alone on DP-SGD steps, the generated extractor fixed (HyperFL's first phase)."""
    head = model.head_parameters()
    names = model.head_names
    with torch.no_grad():
        generated = model.generate()
    opt = _sgd([head], head_cfg)
    used = []
    for _ in range(steps):
        idx = next(sampler)
        sums = [torch.zeros_like(p) for p in head]
        if len(idx):
            per = per_sample_gradients(model.target, generated, {n: p.detach() for n, p in zip(names, head,
                                       strict=True)}, inputs[idx], labels[idx], loss_fn)
            c = clip_factors(_squared_norms(per.values()).sqrt(), noisy.max_norm)
            sums = [torch.einsum("i,i...->...", c, per[n]) for n in names]
        _set_grads(head, [noisy(s) for s in sums])
        opt.step()
        used.append(idx)
    return used


def _hypernetwork_phase(model: HyperFLNet, inputs: Tensor, labels: Tensor, loss_fn: LossFn, noisy: _NoisySum,
                        sampler: Iterator[Tensor], steps: int, training: LocalTraining,
                        clip_norm: float) -> list[Tensor]:
    """Hypernetwork and embedding on DP-SGD steps, then HyperFL's per-group norm clip,
    weight decay and momentum (post-processing of the noisy gradient)."""
    hyper = list(model.hypernetwork.parameters())
    opt = _sgd([hyper, [model.embedding]], training, weight_decay=0.0)
    buffers = _HeadGradients(model.hypernetwork)
    used = []
    for _ in range(steps):
        idx = next(sampler)
        _hypernetwork_gradients(model, inputs[idx], labels[idx], loss_fn, noisy, with_head=False, buffers=buffers)
        torch.nn.utils.clip_grad_norm_(hyper, clip_norm, foreach=True)
        torch.nn.utils.clip_grad_norm_([model.embedding], clip_norm)
        _decay_([*hyper, model.embedding], training.weight_decay)
        opt.step()
        used.append(idx)
    return used


def _hypernetwork_gradients(model: HyperFLNet, x: Tensor, y: Tensor, loss_fn: LossFn, noisy: _NoisySum,
                            with_head: bool, buffers: _HeadGradients | None = None) -> None:
    """Set ``.grad`` of the hypernetwork, the embedding (and the head, ``with_head``) to one
    DP-SGD step's noisy mean of per-sample gradients clipped jointly over all of them."""
    hn = model.hypernetwork
    head_params = model.head_parameters()
    head = {n: p.detach() for n, p in zip(model.head_names, head_params, strict=True)}
    mlp = {n: p.detach() for n, p in hn.mlp.named_parameters()}
    features, mlp_vjp = vjp(lambda params, e: functional_call(hn.mlp, params, (e,)), mlp, model.embedding.detach())
    with torch.no_grad():
        generated = hn.from_features(features)
    heads_w = [h.weight.detach() for h in hn.heads]
    if len(y):
        per = per_sample_gradients(model.target, {} if with_head else head,
                                   {**generated, **head} if with_head else generated, x, y, loss_fn)
        flat = [per[n].flatten(1) for n in hn.names]
        cotangents = sum(f @ w for f, w in zip(flat, heads_w, strict=True))  # u_i = Σ_k A_kᵀ g_ik: [B, hidden]
        per_mlp, per_embedding = vmap(mlp_vjp)(cotangents)
        squared = (_squared_norms(flat) * (features.square().sum() + 1) + _squared_norms(per_mlp.values())
                   + _squared_norms([per_embedding]))
        if with_head:
            squared = squared + _squared_norms(per[n] for n in model.head_names)
        c = clip_factors(squared.sqrt(), noisy.max_norm)
        generated_sums = [c @ f for f in flat]
        mlp_sums, embedding_sum = mlp_vjp(c @ cotangents)
        head_sums = [torch.einsum("i,i...->...", c, per[n]) for n in model.head_names] if with_head else []
    else:  # an empty Poisson batch: the step is noise alone
        generated_sums = [torch.zeros(w.shape[0], dtype=w.dtype, device=w.device) for w in heads_w]
        mlp_sums, embedding_sum = {n: torch.zeros_like(p) for n, p in mlp.items()}, torch.zeros_like(model.embedding)
        head_sums = [torch.zeros_like(p) for p in head_params] if with_head else []
    buffers = _HeadGradients(hn) if buffers is None else buffers
    for w, b, buf, s in zip(buffers.weights, buffers.biases, buffers.buffers, generated_sums, strict=True):
        w.grad = noisy.rank_one(s, features.detach(), buf)
        b.grad = noisy(s)
    for n, p in hn.mlp.named_parameters():
        p.grad = noisy(mlp_sums[n])
    model.embedding.grad = noisy(embedding_sum)
    if with_head:
        _set_grads(head_params, [noisy(s) for s in head_sums])


def _squared_norms(per_sample: Iterable[Tensor]) -> Tensor:
    """``Σ ‖t_i‖²`` over the tensors (each ``[B, ...]``), per sample: ``[B]``."""
    return cast(Tensor, sum(t.flatten(1).square().sum(1) for t in per_sample))
