"""Hypothesis profiles: a short seeded run in CI, a long run on request.

DOCKER_FORENSICS_FUZZ_EXAMPLES=1000000 python -m pytest -q tests/fuzz -p no:cacheprovider
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=300, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.register_profile(
    "long",
    max_examples=max(1, int(os.environ.get("DOCKER_FORENSICS_FUZZ_EXAMPLES", "") or 1)),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
settings.load_profile("long" if os.environ.get("DOCKER_FORENSICS_FUZZ_EXAMPLES") else "ci")
