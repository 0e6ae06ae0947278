"""The `backend` config group's schema: one dataclass for every backend, so overrides are type-checked.

Keys a backend does not use are ignored by it (a Slurm partition means nothing to Ray).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class BackendConfig:
    name: str = "local"
    # --- slurm (submitit) ---
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    exclusive: bool = False
    array_parallelism: Optional[int] = None  # cap on rows of one sweep running at once
    max_requeue: int = 2  # preemption requeues, bounded
    additional_parameters: Dict[str, Any] = field(default_factory=dict)  # extra sbatch parameters
    setup: List[str] = field(default_factory=list)  # shell lines run in the job before the node entry point
    # --- ray (Ray Jobs API) ---
    address: Optional[str] = None  # http://head:8265; None starts a local head for the session
    runtime_env: Dict[str, Any] = field(default_factory=dict)
    # --- all ---
    poll_s: float = 2.0  # how often a waiting launcher polls job states
