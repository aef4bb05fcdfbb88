"""Compatibility module: the edge-list format is public as :mod:`pathgeom.edgelist`."""

from .edgelist import *  # noqa: F401,F403
from .edgelist import __all__  # noqa: F401
