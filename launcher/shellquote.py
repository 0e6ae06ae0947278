"""Config values into shell text: every value a row's command, setup and build lines interpolate reaches the
node's shell as data, quoted for the place it lands, so row authors cannot forget to.

`resolve_templates` resolves the shell templates a second time against a copy of the resolved config in
which every string value is *marked* (`mark`: a private-use delimiter pair around its UTF-8 in hex), and
`render` replaces each marked value by one quoted for its context (`_quote_for`: bare, "...", '...', a
comment). A value that needs no quoting comes out unchanged, so the seed's commands are as published.

Shell, not data: the templates (`launcher.plan.SHELL_TEMPLATES`) and the results of `SHELL_RESOLVERS`
(`lx.torchrun`, `lx.flag`, and `lx.shell`, the explicit "this value is shell text"); every other
resolver's result is wrapped in `${lx.data:...}` (`wrap_resolvers`). Refused: a value inside a shell
parameter expansion (`\\${VAR:-${data.x}}`) and a value with a NUL byte.
"""

from __future__ import annotations

import contextvars
import re
import shlex
from typing import Any, Callable, Iterable

from omegaconf import ListConfig, OmegaConf

OPEN, CLOSE = "\ue000", "\ue001"
_MARK = re.compile(f"{OPEN}([0-9a-f]*){CLOSE}")
#: resolvers whose result is shell text (their data parts are marked by themselves)
SHELL_RESOLVERS = frozenset({"lx.torchrun", "lx.flag", "lx.shell", "lx.span"})
#: the resolver `wrap_resolvers` puts around every other resolver call in a template
DATA_RESOLVER = "lx.data"
_SHELL_PASS: contextvars.ContextVar[bool] = contextvars.ContextVar("launcher_shell_pass", default=False)


class QuoteError(ValueError):
    """A value that cannot be put into the job script as data (the message says why)."""


# ---------------------------------------------------------------- marking


def unmark(value: Any) -> Any:
    """The plain value of a (possibly partly) marked string; anything else unchanged."""
    if isinstance(value, str) and OPEN in value:
        return _MARK.sub(lambda m: bytes.fromhex(m[1]).decode("utf-8"), value)
    return value


def mark(value: Any) -> str:
    """`value` as one piece of data (idempotent: a marked value is marked once)."""
    return OPEN + str(unmark(value)).encode("utf-8").hex() + CLOSE


def data(value: Any) -> Any:
    """For resolvers: `value` as data while templates are resolved for the shell, itself otherwise."""
    return mark(value) if _SHELL_PASS.get() and value is not None else value


def shell_text(value: Any) -> Any:
    """`${lx.shell:...}`: the value as shell text, unquoted (the row author says it is shell)."""
    return unmark(value)


def plain_args(fn: Callable) -> Callable:
    """A resolver that computes on plain values whatever reaches it (marked or not)."""

    def call(*args: Any) -> Any:
        return fn(*(unmark(a) for a in args))

    call.__name__ = getattr(fn, "__name__", "resolver")
    return call


# ---------------------------------------------------------------- templates


def _closing_brace(text: str, k: int) -> int:
    """Index of the `}` closing an interpolation whose body starts at `k`, or -1."""
    depth, i, quote = 1, k, None
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


_CALL = re.compile(r"\s*([A-Za-z_][\w\-]*(?:\.[A-Za-z_][\w\-]*)*)\s*:")


def wrap_resolvers(template: str) -> str:
    """`template` with every resolver call outside SHELL_RESOLVERS wrapped in `${lx.data:...}`."""
    out, i = [], 0
    while i < len(template):
        if template.startswith("${", i):
            backslashes = len(template[:i]) - len(template[:i].rstrip("\\"))
            end = _closing_brace(template, i + 2) if backslashes % 2 == 0 else -1
            if end > 0:
                body = template[i + 2 : end]
                m = _CALL.match(body)
                if m is None:  # a node interpolation: its value is a marked leaf of the copy
                    out.append(template[i : end + 1])
                else:
                    call = "${" + m[1] + ":" + wrap_resolvers(body[m.end() :]) + "}"
                    out.append(call if m[1] in SHELL_RESOLVERS | {DATA_RESOLVER} else f"${{{DATA_RESOLVER}:{call}}}")
                i = end + 1
                continue
        out.append(template[i])
        i += 1
    return "".join(out)


def _marked(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _marked(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_marked(v) for v in node]
    return mark(node) if isinstance(node, str) else node


def _get(doc: dict, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


def _put(doc: dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        doc = doc[part]
    doc[last] = value


def resolve_templates(resolved: dict, raw: dict, keys: Iterable[str], collapse: Iterable[str] = ()) -> dict[str, Any]:
    """The shell text of each template in `keys` (a string or a list of strings; absent keys are left
    out): `raw` (the unresolved config) gives the templates, `resolved` the values, each quoted for
    where it lands.  Keys in `collapse` get their whitespace runs folded to one space (a command written
    over several YAML lines).  Raises QuoteError for a value the shell cannot carry, naming the key."""
    doc = _marked(resolved)
    templates = {k: t for k in keys if (t := _get(raw, k)) is not None}
    for key, t in templates.items():
        _put(doc, key, [wrap_resolvers(str(x)) for x in t] if isinstance(t, list) else wrap_resolvers(str(t)))
    conf = OmegaConf.create(doc)
    token = _SHELL_PASS.set(True)
    try:
        out: dict[str, Any] = {}
        for key in templates:
            node = OmegaConf.select(conf, key, throw_on_missing=True)
            fold = key in collapse
            try:
                if isinstance(node, ListConfig):
                    out[key] = [render(str(v), fold) for v in OmegaConf.to_container(node, resolve=True)]
                else:
                    out[key] = render(str(node), fold)
            except QuoteError as e:
                raise QuoteError(f"{key}: {e}") from None
        return out
    finally:
        _SHELL_PASS.reset(token)


# ---------------------------------------------------------------- rendering


def _quote_for(state: str, value: str) -> str:
    if "\0" in value:
        raise QuoteError(f"the value {value!r} holds a NUL byte, which no shell word can carry")
    if state == "dq":
        return re.sub(r'([\\"$`])', r"\\\1", value)
    if state == "sq":
        return "'" + shlex.quote(value) + "'"
    if state == "ansi":
        return "'" + shlex.quote(value) + "$'"
    if state == "comment":
        return value.replace("\n", " ")
    if state == "bq":  # bash unescapes \\ \` \$ inside `...` before it parses the command
        return re.sub(r"([\\`$])", r"\\\1", shlex.quote(value))
    if state == "param":
        raise QuoteError(
            f"the value {value!r} sits inside a shell ${{...}} expansion, where it cannot be quoted; "
            "assign it to a variable first (X=${...}; ... ${X:-...})"
        )
    return shlex.quote(value)


_WORD_BREAK = " \t\n;&|()<>"


def render(text: str, collapse: bool = False) -> str:
    """Marked text -> shell text: each marked value quoted for its context (see the module docstring)."""
    if collapse:
        parts = _MARK.split(text)  # literal, hex, literal, hex, ...
        text = "".join(
            re.sub(r"\s+", " ", p) if i % 2 == 0 else f"{OPEN}{p}{CLOSE}" for i, p in enumerate(parts)
        ).strip()
    out: list[str] = []
    stack: list[list] = [["top", 0]]
    i, n = 0, len(text)
    while i < n:
        m = _MARK.match(text, i)
        if m:
            out.append(_quote_for(stack[-1][0], bytes.fromhex(m[1]).decode("utf-8")))
            i = m.end()
            continue
        step = _scan(text, i, stack)
        out.append(text[i : i + step])
        i += step
    return "".join(out)


#: contexts that only their end character closes (a backslash escapes it in $'...' alone)
_ENDS = {"sq": "'", "comment": "\n", "ansi": "'"}
#: what `$` followed by a character opens (inside "..." only $( and ${ do)
_OPENERS = {"$(": "sub", "${": "param", "$'": "ansi"}


def _scan(text: str, i: int, stack: list[list]) -> int:
    """Advance the shell-context `stack` over the character(s) at `i`; returns how many were consumed."""
    state, ch, two = stack[-1][0], text[i], text[i : i + 2]
    if ch == "\\" and state not in ("sq", "comment"):
        if text.startswith(OPEN, i + 1):
            raise QuoteError("a backslash right before an interpolated value would escape its quoting; remove it")
        return 2
    if state in _ENDS:
        if ch == _ENDS[state]:
            stack.pop()
        return 1
    if two in _OPENERS and not (state == "dq" and two == "$'"):
        stack.append([_OPENERS[two], 0])
        return 2
    if state == "dq":
        if ch == '"':
            stack.pop()
        elif ch == "`":
            stack.append(["bq", 0])
        return 1
    # unquoted: top level, $( ), ` `, ${ }
    if ch == "'":
        stack.append(["sq", 0])
    elif ch == '"':
        stack.append(["dq", 0])
    elif ch == "`":
        stack.pop() if state == "bq" else stack.append(["bq", 0])
    elif state == "sub" and ch in "()":
        if ch == "(":
            stack[-1][1] += 1
        elif stack[-1][1] == 0:
            stack.pop()
        else:
            stack[-1][1] -= 1
    elif state == "param" and ch == "}":
        stack.pop()
    elif ch == "#" and state != "param" and (i == 0 or text[i - 1] in _WORD_BREAK):
        stack.append(["comment", 0])
    return 1
