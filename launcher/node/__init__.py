"""What runs on the compute node, the same for every backend: `python -m launcher.node RUN_DIR`.

`run` (spec.json -> result.json), `execute` and `process` (the command, its process group, the
watchdog), `ownlog` (this run's own log), `provenance` and `software` (the machine and environment as
the job saw them), `environment`, `venv`, `build` and `script` (the row's environment, its build once
per recipe, the job script). Nothing here imports a scheduler's client library.
"""
