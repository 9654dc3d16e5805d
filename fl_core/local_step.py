"""The local optimiser step, written once and functionally (DESIGN: ``LocalTraining``).

``optimizer_step(w, g, training, step, state)`` returns the parameters after one step
of ``torch.optim.SGD`` (momentum, dampening 0, weight decay) or ``torch.optim.Adam``
(default betas and eps, weight decay as L2 added to the gradient) on the flat vector
``w`` with gradient ``g``, out of place, so it is differentiable in ``w`` and ``g``:
the honest client trains with it (``fedarena.fl_core.client.train_client``), and the attacker's
``ClientSimulator`` unrolls the same function through the local steps (IG paper
section 5, inversefed ``loss_steps``). ``state`` holds the optimiser's buffers between
steps (start with ``{}``); ``step`` counts from 1.

The operations are torch's own, in torch's order (``_multi_tensor_sgd`` and
``_multi_tensor_adam`` of torch 2.x: ``add(alpha=)``, ``mul`` then ``add``, ``lerp``,
``addcmul``, ``sqrt`` / ``div`` / ``add``, ``addcdiv``), so on a flat vector they give
bit for bit the parameters ``torch.optim.SGD/Adam(foreach=True)`` give per tensor:
``w - lr * g`` would round twice where torch's fused ``add(alpha=-lr)`` rounds once.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .updates import LocalTraining

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def optimizer_step(w: Tensor, g: Tensor, t: LocalTraining, step: int, state: dict[str, Tensor]) -> Tensor:
    """One step of ``t.optimizer`` at ``w`` with gradient ``g``; updates ``state``."""
    if t.weight_decay:
        g = torch.add(g, w, alpha=t.weight_decay)
    if t.optimizer == "sgd":
        if t.momentum:
            buf = g if "buf" not in state else torch.add(state["buf"].mul(t.momentum), g)
            state["buf"] = buf
            g = buf
        return torch.add(w, g, alpha=-t.lr)
    beta1, beta2 = ADAM_BETAS
    m = state["m"] if "m" in state else torch.zeros_like(g)
    v = state["v"] if "v" in state else torch.zeros_like(g)
    m = torch.lerp(m, g, 1 - beta1)
    v = torch.addcmul(v.mul(beta2), g, g, value=1 - beta2)
    state["m"], state["v"] = m, v
    step_size = -(t.lr / (1 - beta1**step))
    # sqrt has an infinite derivative at 0 (parameters with exactly zero gradient);
    # the 1e-30 shift keeps double-backward finite. It changes no float32 value of v
    # above ~1e-22, and where v is 0 so is m, and the step is 0 either way.
    denom = torch.add((v + 1e-30).sqrt() / (1 - beta2**step) ** 0.5, ADAM_EPS)
    return torch.addcdiv(w, m, denom, value=step_size)
