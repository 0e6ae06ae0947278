"""Credentials as config values, and the way to pass one without storing it (issue 21, class 8).

`'+impl.env.HF_TOKEN=hf_...'` used to land in clear in job.sh, spec.json and three `.hydra/*.yaml`
files.  Hydra writes `.hydra/` before any launcher code sees the config, and job.sh must run the
command, so masking cannot reach every copy; the launcher refuses such values instead (on the command
line before Hydra starts, in config files at plan time, where the caller also takes back what Hydra
wrote) and offers the clean way:

    impl.env_pass: [HF_TOKEN, WANDB_API_KEY]

names variables to take from the submitting environment at run time.  Only the *names* are written
(spec.json, job.sh checks that each is set); the value travels as the process environment does: the
local backend's command inherits it, Slurm exports the submitting environment to the job (sbatch's
default `--export=ALL`; Slurm keeps it in its own state, readable by its administrators), the Ray
backend puts it in the job's runtime_env (held by the Ray head, behind its token).

What counts as a credential: a value with a known token shape (`hf_`, `ghp_`, `github_pat_`, `glpat-`,
`xox?-`, `sk-`, AWS `AKIA`/`ASIA` key ids, Google `AIza` keys, JWTs, PEM private keys), and any non-empty
value of an env variable whose name says it is one (`*_TOKEN`, `*_SECRET`, `*PASSWORD`, `*_API_KEY`,
`*_ACCESS_KEY`, `*_PRIVATE_KEY`, `*CREDENTIALS`).  A value that only refers to another variable
(`$HOME/...`, `${oc.env:X}` before resolution) is not one.
"""

from __future__ import annotations

import re

TOKEN_RE = re.compile(
    r"(?<![A-Za-z0-9])("
    r"hf_[A-Za-z0-9]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{16,}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}|sk-[A-Za-z0-9_-]{20,}|(?:AKIA|ASIA)[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}|-----BEGIN [A-Z ]*PRIVATE KEY-----)"
)
SECRET_NAME_RE = re.compile(
    r"(?i)(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|PASS|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|"
    r"CREDENTIALS?|AUTH)$"
)
HOW = (
    "pass it by name instead, never stored: impl.env_pass=[NAME] (or '+impl.env_pass=[NAME]') takes NAME from "
    "the environment you submit from at run time; the launcher refuses credentials in values so they are not "
    "written into job.sh, spec.json and Hydra's .hydra/ files"
)


def mask_values(text: str) -> str:
    return TOKEN_RE.sub(lambda m: m[0][:3] + "***", text)


def _env_name(key: str) -> str | None:
    """NAME when the config key `key` is an env variable's (`impl.env.NAME`, `...env.NAME`)."""
    parts = key.split(".")
    return parts[-1] if len(parts) >= 2 and parts[-2] in ("env", "env_vars") else None


def value_problem(key: str, value: str) -> str | None:
    """The refusal for config key `key` holding `value`, when the value is (or looks like) a credential."""
    if not isinstance(value, str):
        return None
    if TOKEN_RE.search(value):
        return f"{key}={mask_values(value)} looks like a credential; {HOW.replace('NAME', _env_name(key) or 'NAME')}"
    name = _env_name(key)
    if name and SECRET_NAME_RE.search(name) and value.strip() and not value.strip().startswith("$"):
        return f"{key}=*** (an env variable named like a credential, with a value); {HOW.replace('NAME', name)}"
    return None


def argv_problems(argv: list[str]) -> list[str]:
    """Refusals for Hydra overrides on the command line (`[+|++|~]key=value`) that hold credentials."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            if TOKEN_RE.search(arg):
                out.append(f"{mask_values(arg)} looks like a credential; {HOW}")
            continue
        problem = value_problem(key.lstrip("+~"), value.strip("'\""))
        if problem:
            out.append(problem)
    return out


def missing(names: list[str], environ) -> list[str]:
    return [n for n in names if n not in environ]
