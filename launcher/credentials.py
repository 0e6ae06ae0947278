"""Credentials inside URLs (`https://user:token@host/...`): refused, never written.

Why refuse rather than mask.  A repository URL travels into spec.json, result.json, the printed plan,
git's own messages and, before any launcher code runs, Hydra's `.hydra/overrides.yaml`, `hydra.yaml`
and `config.yaml` (and a multirun's `multirun.yaml` and its job listing on stdout).  Masking would
have to reach every one of those writers, Hydra's included, and a URL with its secret masked no longer
clones, so the real one would still have to travel to the node somehow.  Git already has the right
places for a secret: a credential helper (`git config --global credential.helper store|cache|<the
platform's manager>`), `GIT_ASKPASS`, `~/.netrc`, or an SSH key.  So a URL that carries a secret is
refused: on the command line before Hydra starts (`check_argv`, nothing is written), and in the
composed config at plan time (a config file, `${oc.env:...}`), where the caller also takes back what
Hydra wrote for the row.  Every message masks the secret (`mask`).

What counts as a secret: a password in the URL's userinfo (any scheme), and for http(s) and ftp a user
name that looks like a token (long, or a known token prefix: `ghp_`, `github_pat_`, `glpat-`, ...).  A
plain user name (`ssh://git@host`, `https://myorg@dev.azure.com/...`) is not a secret and passes.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<userinfo>[^/@\s?#]+)@")
_TOKEN_PREFIXES = (
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "gldt-",
    "glptt-",
    "xoxb-",
    "ATBB",
    "hf_",
)
_TOKEN_LENGTH = 20

WHY = (
    "the launcher refuses such URLs so the secret is not printed or written into spec.json, result.json and "
    "Hydra's .hydra/ files"
)
HOW_GIT = (
    "give the URL without them and let git supply them: a credential helper (`git config --global "
    "credential.helper store`, `cache`, or your platform's manager), GIT_ASKPASS, ~/.netrc, or an SSH URL "
    "with a key (git@host:org/repo.git); " + WHY
)
HOW_OTHER = (
    "give the URL without them and the secret to the tool that needs it through its own environment "
    "or files (a Ray head's token: RAY_AUTH_MODE=token with RAY_AUTH_TOKEN or ~/.ray/auth_token, "
    "docs/cluster.md); " + WHY
)


def _how(key: str) -> str:
    return HOW_GIT if "repo" in key else HOW_OTHER


def _is_secret(scheme: str, userinfo: str) -> bool:
    user, sep, password = userinfo.partition(":")
    if sep and password:
        return True
    if scheme.lower() in ("http", "https", "ftp", "ftps"):
        tokenish = len(user) >= _TOKEN_LENGTH and re.fullmatch(r"[A-Za-z0-9_\-]+", user) and re.search(r"\d", user)
        return user.startswith(_TOKEN_PREFIXES) or len(user) >= 32 or bool(tokenish)
    return False


def mask(text: str) -> str:
    """`text` with the userinfo of every URL that carries a secret, and every token-like value, replaced by `***`."""
    from .secretvalues import mask_values

    return mask_values(
        _URL_USERINFO.sub(lambda m: f"{m['scheme']}://***@" if _is_secret(m["scheme"], m["userinfo"]) else m[0], text)
    )


def carries_secret(text: str) -> bool:
    return any(_is_secret(m["scheme"], m["userinfo"]) for m in _URL_USERINFO.finditer(text))


def _strings(node: Any, key: str = "") -> Iterable[tuple[str, str]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _strings(v, f"{key}[{i}]")
    elif isinstance(node, str):
        yield key, node


def credential_problems(config: dict) -> list[str]:
    """One message per config value (a resolved container) that holds a URL with a secret, or a value that
    looks like a credential (secretvalues.py); masked."""
    from .secretvalues import value_problem

    out = [
        f"{key}={mask(value)} carries credentials in the URL: {_how(key)}"
        for key, value in _strings(config)
        if carries_secret(value)
    ]
    out += [p for key, value in _strings(config) if not carries_secret(value) and (p := value_problem(key, value))]
    return out


def check_argv(argv: list[str]) -> str | None:
    """The refusal for a command line that holds a URL with a secret or a credential-like value (None when
    it holds none)."""
    from .secretvalues import argv_problems

    bad = [a for a in argv if carries_secret(a)]
    if bad:
        return f"{', '.join(mask(a) for a in bad)}: a URL with credentials in it; {_how(' '.join(bad))}"
    values = argv_problems(argv)
    return "; ".join(values) if values else None
