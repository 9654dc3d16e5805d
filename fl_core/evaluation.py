"""Test-set accuracy and loss of a model, on the device the dataset is on (the
simulation moves it to the model's device once)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .data import ImageDataset


@torch.no_grad()
def evaluate(model: nn.Module, dataset: ImageDataset, batch_size: int = 1000) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) in eval mode; restores the model's mode."""
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    for start in range(0, len(dataset), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(dataset)), device=dataset.labels.device)
        logits = model(dataset.normalized(idx))
        labels = dataset.labels[idx]
        loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
        correct += int((logits.argmax(1) == labels).sum())
    model.train(was_training)
    n = max(len(dataset), 1)
    return correct / n, loss_sum / n


@torch.no_grad()
def predictions(model: nn.Module, dataset: ImageDataset, batch_size: int = 1000) -> torch.Tensor:
    """Predicted labels for every sample (for attack-success-rate metrics)."""
    was_training = model.training
    model.eval()
    device = dataset.labels.device
    out = [model(dataset.normalized(torch.arange(s, min(s + batch_size, len(dataset)), device=device))).argmax(1)
           for s in range(0, len(dataset), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long, device=device)
