"""Pretrained generators as image priors for gradient inversion (issue 16: GIFD, latent search).

``build_generator(name)`` is the one entry point; ``GENERATORS`` lists the registered names
(``dcgan_faces64``, ``mnist_gan``), and any ``dcgan_<dataset>_<size>`` folder written by
``python -m fedarena.attacks.inversion.generators.train_dcgan`` is a generator name too. Every generator
is a ``SplitGenerator``: ``latent_shape``, ``split_points``, ``head``/``tail``, ``output_range``,
``image_shape``, ``feature_shapes``, ``sample_latent`` and ``to_model_input``.
"""

from .base import LUMA_WEIGHTS, SplitGenerator, convert_channels
from .models import (
    GENERATORS,
    DCGANGenerator,
    MLPGenerator,
    build_generator,
    load_trained_dcgan,
    trained_generator_names,
)

__all__ = [
    "LUMA_WEIGHTS", "SplitGenerator", "convert_channels", "GENERATORS", "DCGANGenerator", "MLPGenerator",
    "build_generator", "load_trained_dcgan", "trained_generator_names",
]
