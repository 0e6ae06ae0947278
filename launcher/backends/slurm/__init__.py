"""The Slurm backend, through submitit: rows become batch jobs (a job array per sweep), states come from sacct.

job.py         what runs inside the job: the node entry point under submitit, time limit vs preemption
backend.py     submission (resources, arrays) and the row's state; `SlurmConfig`, the yaml's schema
accounting.py  what Slurm says about a job (sacct, squeue) as our states, with the scheduler's words
"""

from .backend import SlurmBackend, SlurmConfig, SlurmUnavailable, check_slurm

BACKEND = SlurmBackend

__all__ = ["BACKEND", "SlurmBackend", "SlurmConfig", "SlurmUnavailable", "check_slurm"]
