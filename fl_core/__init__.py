"""FedArena's federated-learning core: data, models, clients, server, simulation.

The contracts every other package builds on (see DESIGN.md): flat parameter vectors,
``ClientUpdate``, ``LocalTraining``, ``Observation``/``ThreatModel``, ``Aggregator``,
protocols (``FLProtocol``; FedSGD/FedAvg by default).
"""

from .aggregation import AggregationResult, Aggregator, FedAvg
from .client import Client, GlobalState, LocalTrainer, train_client
from .corruptions import CORRUPTIONS, corrupt, corrupted_indices
from .data import ImageDataset, Normalization
from .data_root import ChecksumError, CorruptDataError, MissingDataError, data_root, dataset_dir, weights_path
from .datasets import DATASETS, DatasetSizeWarning, load_dataset
from .evaluation import evaluate, predictions
from .models import MODELS, build_model, dropout_layers, mode_dependent
from .partition import PARTITIONERS, label_distribution, partition
from .protocol import PROTOCOLS, ClientMomentum, ClientState, Evaluation, FedAvgProtocol, FedPer, FLProtocol
from .registry import Registry, UnknownNameError
from .seeding import derive_seed, numpy_rng, torch_generator
from .server import Server, StepRecord
from .simulation import (
    Adversary,
    DataAttack,
    FederationConfig,
    History,
    RoundContext,
    RoundRecord,
    Simulation,
    UpdateAttack,
    UploadEvent,
)
from .threat import Observation, ThreatModel, make_observation
from .updates import ClientUpdate, LocalTraining, PrivateData
from .vectors import ParameterLayout, model_to_vector, vector_to_model

__version__ = "0.1.0"

__all__ = [
    "AggregationResult", "Aggregator", "FedAvg", "Client", "GlobalState", "LocalTrainer", "train_client",
    "ImageDataset", "Normalization", "evaluate", "predictions", "Registry", "UnknownNameError",
    "derive_seed", "numpy_rng", "torch_generator", "Server", "StepRecord", "Adversary", "DataAttack",
    "FederationConfig", "History", "RoundContext", "RoundRecord", "Simulation", "UpdateAttack",
    "UploadEvent", "Observation", "ThreatModel", "make_observation", "ClientUpdate", "LocalTraining",
    "PrivateData", "ParameterLayout", "model_to_vector", "vector_to_model", "__version__",
    "CORRUPTIONS", "corrupt", "corrupted_indices", "ChecksumError", "CorruptDataError", "MissingDataError",
    "data_root", "dataset_dir", "weights_path", "DATASETS", "DatasetSizeWarning", "load_dataset",
    "MODELS", "build_model", "dropout_layers", "mode_dependent", "PARTITIONERS", "label_distribution", "partition",
    "PROTOCOLS", "ClientMomentum", "ClientState", "Evaluation", "FedAvgProtocol", "FedPer", "FLProtocol",
]
