"""Poisoning attacks by malicious clients, registered in ``POISONING_ATTACKS``.

Model poisoning (``craft(ctx) -> [m, d]``, ``model_poisoning``): ``sign_flip``,
``additive_noise``, ``alie``, ``ipm``, ``min_max``, ``min_sum``, ``model_replacement``.
Data poisoning (``poison(data, generator) -> ImageDataset``, ``data_poisoning``):
``label_flip``, ``multi_label_flip``, ``backdoor``. Unreliable clients are not attacks:
they are benign clients with corrupted data (``fedarena.fl_core.corruptions``). ``poison_stack`` runs
a model-poisoning attack on a plain ``[n, d]`` stack of updates.
"""

from .data_poisoning import Backdoor, LabelFlip, MultiLabelFlip
from .model_poisoning import (
    ALIE,
    IPM,
    AdditiveNoise,
    MinMax,
    MinSum,
    ModelReplacement,
    SignFlip,
    alie_z,
    bisect_gamma,
)
from .on_stack import poison_stack

__all__ = ["ALIE", "IPM", "AdditiveNoise", "Backdoor", "LabelFlip", "MinMax", "MinSum", "ModelReplacement",
           "MultiLabelFlip", "SignFlip", "alie_z", "bisect_gamma", "poison_stack"]
