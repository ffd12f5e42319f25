"""Procedural demo data: the "demo world" landscape panoramas with labels and captions.

The public names are those of :mod:`syncguide.demo.world` (its ``__all__``), re-exported here.
"""

from syncguide.demo.world import *  # noqa: F403
from syncguide.demo.world import __all__ as __all__
