"""The federation both apps (and the equivalence test) build: data, partition, model, training.

MNIST from the data root (``FEDARENA_DATA``) when it is there, else scikit-learn's digits;
``samples_per_client`` caps each client's share so a CPU run stays short.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from fedarena.fl_core.data import ImageDataset
from fedarena.fl_core.datasets import load_dataset
from fedarena.fl_core.models import build_model
from fedarena.fl_core.partition import partition
from fedarena.fl_core.updates import LocalTraining


@dataclass(frozen=True)
class Setup:
    """Everything a run is determined by (the Flower run config carries the same fields)."""

    num_clients: int = 10
    rounds: int = 3
    dataset: str = "auto"  # "mnist", "digits", or "auto": MNIST when the data root has it
    model: str = "mlp"
    samples_per_client: int = 300
    seed: int = 0
    lr: float = 0.05
    batch_size: int = 32
    malicious: int = 2  # clients 0 .. malicious-1 attack

    @classmethod
    def from_config(cls, config: dict) -> Setup:
        fields = cls.__dataclass_fields__
        return cls(**{k.replace("-", "_"): config[k] for k in config if k.replace("-", "_") in fields})

    @property
    def training(self) -> LocalTraining:
        return LocalTraining(algorithm="fedavg", lr=self.lr, epochs=1, batch_size=self.batch_size)

    @property
    def malicious_ids(self) -> list[int]:
        return list(range(self.malicious))


def dataset_name(setup: Setup) -> str:
    if setup.dataset != "auto":
        return setup.dataset
    try:
        load_dataset("mnist", "test")
    except FileNotFoundError:  # fedarena.fl_core.data_root.MissingDataError says what is missing
        return "digits"
    return "mnist"


def client_datasets(setup: Setup) -> tuple[list[ImageDataset], ImageDataset]:
    """The clients' data (IID over the first ``num_clients × samples_per_client`` samples) and the test set."""
    name = dataset_name(setup)
    train, test = load_dataset(name, "train"), load_dataset(name, "test")
    train = train.subset(list(range(min(len(train), setup.num_clients * setup.samples_per_client))))
    parts = partition("iid", train.labels, setup.num_clients, setup.seed)
    return [train.subset(p) for p in parts], test


def make_model(setup: Setup, data: ImageDataset) -> nn.Module:
    return build_model(setup.model, data.num_classes, data.input_shape, seed=setup.seed)
