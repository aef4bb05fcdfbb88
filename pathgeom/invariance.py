"""Compatibility module: the rescaling group lives in :mod:`pathgeom.rescaling`, the
verifiers of Lemma 1 and Theorem 2 in :mod:`pathgeom.verify`.  Every name that was
importable from here still is."""

from . import rescaling as _rescaling, verify as _verify
from ._json import jsonable as _jsonable  # noqa: F401
from .rescaling import *  # noqa: F401,F403
from .rescaling import (_LOG_BETA_MAX, DENSE_BASIS_LIMIT, _group_basis,  # noqa: F401
                        _param_ratios, _log_beta, _violation)
from .verify import *  # noqa: F401,F403
from .verify import (ENUMERATION_BUDGET, EQ11_BUDGET, LEMMA1_EXACT_BUDGET,  # noqa: F401
                     LEMMA1_EXACT_WORK, LEMMA1_MAX_PATHS, _numerical_kappa, _rel_diff)

__all__ = list(_rescaling.__all__) + list(_verify.__all__)
