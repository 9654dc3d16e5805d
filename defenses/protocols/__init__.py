"""Protocol-level defenses: change what a client shares (HyperFL). Importing registers them
in ``fedarena.fl_core.protocol.PROTOCOLS``."""

from fedarena.fl_core.protocol import PROTOCOLS

from .hyperfl import (
    REFERENCE_TRAINING,
    HyperFL,
    HyperFLNet,
    HyperNetwork,
    ReferenceCNN,
    Sizes,
    build_hyperfl_net,
    hyperfl_sizes,
    target_parameters,
)
from .hyperfl_dp import PrivateHyperFLRound

PROTOCOLS.add("hyperfl", HyperFL, "HyperFL: only a hypernetwork is shared; embedding and head kept per client "
              "(Guo et al. 2025)")

__all__ = ["REFERENCE_TRAINING", "HyperFL", "HyperFLNet", "HyperNetwork", "PrivateHyperFLRound", "ReferenceCNN",
           "Sizes", "build_hyperfl_net", "hyperfl_sizes", "target_parameters"]
