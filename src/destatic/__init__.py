"""destatic: take steady background noise out of videos and recordings.

``import destatic`` loads nothing heavy: :func:`denoise` and the other names
below load the numpy/scipy core on first use; the Prefect pipeline lives in
:mod:`destatic.flows`, :mod:`destatic.tasks` and :mod:`destatic.settings`,
imported on demand.
"""

from typing import TYPE_CHECKING

from destatic._lazy import lazy_package

__version__ = "0.1.0"
__getattr__, __dir__, __all__ = lazy_package(__name__)

if TYPE_CHECKING:
    from destatic.dsp import NoiseProfile, denoise, estimate_profile
    from destatic.errors import BadInputError, DestaticError, ParameterError, TransientError
