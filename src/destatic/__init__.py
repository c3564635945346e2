"""destatic: take steady background noise out of videos and recordings.

``import destatic`` stays light (numpy and scipy only); the Prefect pipeline
lives in :mod:`destatic.flows`, :mod:`destatic.tasks` and
:mod:`destatic.settings`, imported on demand.
"""

from destatic.dsp import NoiseProfile, denoise, estimate_profile
from destatic.errors import BadInputError, DestaticError, ParameterError, TransientError

__all__ = [
    "BadInputError",
    "DestaticError",
    "NoiseProfile",
    "ParameterError",
    "TransientError",
    "denoise",
    "estimate_profile",
]
__version__ = "0.1.0"
