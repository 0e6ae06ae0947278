"""The Ray backend: every row becomes one Ray job, submitted through the Jobs API.

backend.py  submission, states, time-limit backstop; `RayConfig`, the yaml's schema
head.py     the Ray head a session starts when no address is given, and the Jobs API probe
"""

from .backend import RayBackend, RayConfig
from .head import RayBackendError, jobs_api_answers, node_resources, session_head

BACKEND = RayBackend

__all__ = [
    "BACKEND",
    "RayBackend",
    "RayConfig",
    "RayBackendError",
    "jobs_api_answers",
    "node_resources",
    "session_head",
]
