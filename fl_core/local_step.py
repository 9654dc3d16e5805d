"""The local optimiser step, written once and functionally (DESIGN: ``LocalTraining``).

``optimizer_step(w, g, training, step, state)`` returns the parameters after one step
of ``torch.optim.SGD`` (momentum, dampening 0, weight decay) or ``torch.optim.Adam``
(default betas and eps, weight decay as L2 added to the gradient) on the flat vector
``w`` with gradient ``g``, out of place, so it is differentiable in ``w`` and ``g``:
the honest client trains with it, and the attacker's ``ClientSimulator`` unrolls the
same function through the local steps (IG paper section 5, inversefed ``loss_steps``).
``state`` holds the optimiser's buffers between steps (start with ``{}``); ``step``
counts from 1.
"""

from __future__ import annotations

from torch import Tensor

from .updates import LocalTraining

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def optimizer_step(w: Tensor, g: Tensor, t: LocalTraining, step: int, state: dict[str, Tensor]) -> Tensor:
    """One step of ``t.optimizer`` at ``w`` with gradient ``g``; updates ``state``."""
    if t.weight_decay:
        g = g + t.weight_decay * w
    if t.optimizer == "sgd":
        if t.momentum:
            buf = g if "buf" not in state else t.momentum * state["buf"] + g
            state["buf"] = buf
            g = buf
        return w - t.lr * g
    beta1, beta2 = ADAM_BETAS
    m = (1 - beta1) * g if "m" not in state else beta1 * state["m"] + (1 - beta1) * g
    v = (1 - beta2) * g * g if "v" not in state else beta2 * state["v"] + (1 - beta2) * g * g
    state["m"], state["v"] = m, v
    m_hat = m / (1 - beta1**step)
    # sqrt has an infinite derivative at 0 (parameters with exactly zero gradient);
    # the 1e-30 shift keeps double-backward finite and changes no float32 value.
    v_hat = (v / (1 - beta2**step) + 1e-30).sqrt()
    return w - t.lr * m_hat / (v_hat + ADAM_EPS)
