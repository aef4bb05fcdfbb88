"""Hypothesis profiles: ``ci`` (derandomised, used when CI is set) and ``dev`` (random)."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("dev"), derandomize=True,
                          max_examples=80, print_blob=True)
settings.load_profile(os.environ.get("PATHGEOM_HYPOTHESIS_PROFILE",
                                     "ci" if os.environ.get("CI") else "dev"))
