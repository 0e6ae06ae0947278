"""Source patches, as data: `kind=diff` (a unified diff under jobs/<row>/, applied with `git apply`)
and `kind=replace` (a literal replacement in every tracked file matching a recursive glob).

Patches are applied to a fresh work tree only (prepare builds each tree under a temporary name and
renames it into place when every patch has applied), so a patch that fails never leaves a
half-patched tree behind, and a prepared tree is never patched twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from .errors import PatchError
from .git import git

KINDS = ("diff", "replace")


@dataclass
class Applied:
    """What one patch changed, for the log and the tree's marker."""

    name: str
    kind: str
    files: dict[str, int]  # path -> replacements (replace) or hunks (diff)

    def summary(self) -> str:
        total = sum(self.files.values())
        unit = "replacement" if self.kind == "replace" else "hunk"
        return f"patch {self.name}: {total} {unit}{'s' if total != 1 else ''} in {len(self.files)} file{'s' if len(self.files) != 1 else ''}"


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Translate a path glob to a regex over '/'-separated relative paths.

    `**/` matches zero or more directories (so `**/*.py` is every .py file at any depth, which is what
    the seed's `sed -i ... **/*.py` meant: in bash without `globstar` it would only reach one level);
    `*` and `?` never cross a '/'; `[...]` classes are kept.  A pattern is anchored at the tree's root.
    """
    i, out = 0, []
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            j = pattern.find("]", i + 1)
            if j == -1:
                out.append(re.escape(pattern[i]))
                i += 1
            else:
                body = pattern[i + 1 : j].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = j + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def tracked_files(tree: Path) -> list[str]:
    """Every file git tracks in TREE (so build outputs and .git are never touched by a patch)."""
    out = git(["ls-files", "-z"], cwd=tree).stdout
    return [p for p in out.split("\0") if p]


def patch_file(patch: dict[str, Any], row_dir: Path) -> Path:
    """The diff file of a `kind=diff` patch: `file` relative to jobs/<row>/ (or absolute)."""
    name = patch.get("name") or "?"
    if not patch.get("file"):
        raise PatchError(f"patch {name}: kind=diff needs `file` (a unified diff under {row_dir})")
    path = Path(patch["file"])
    path = path if path.is_absolute() else row_dir / path
    if not path.is_file():
        raise PatchError(f"patch {name}: diff file {path} does not exist; put it under {row_dir} or fix impl.patches")
    return path


def _hunks(diff_text: str) -> dict[str, list[str]]:
    """File (new-side path) -> its hunk headers, parsed from a unified diff."""
    hunks: dict[str, list[str]] = {}
    current = None
    for line in diff_text.splitlines():
        if line.startswith("+++ "):
            target = line[4:].split("\t")[0].strip()
            current = target.split("/", 1)[1] if "/" in target and target != "/dev/null" else target
            hunks.setdefault(current, [])
        elif line.startswith("--- ") and current is None:
            continue
        elif line.startswith("@@") and current is not None:
            hunks[current].append(line)
        elif line.startswith("diff --git "):
            current = None
    return hunks


def _explain_apply_failure(name: str, path: Path, stderr: str) -> str:
    """Turn `git apply`'s message into one naming the patch, the file and the hunk that failed."""
    text = path.read_text(encoding="utf-8", errors="replace")
    hunks = _hunks(text)
    m = re.search(r"patch failed: (.+):(\d+)", stderr)
    if m:
        file, line = m.group(1), int(m.group(2))
        header = next((h for h in hunks.get(file, []) if re.match(rf"@@ -{line}(,\d+)? ", h)), None)
        hunk = f"hunk `{header}`" if header else f"the hunk at line {line}"
        return (
            f"patch {name} ({path}) does not apply: file {file}, {hunk}: the file's text there differs "
            f"from the diff's context; is impl.commit the commit the diff was made for? git says: {stderr.strip()}"
        )
    m = re.search(r"error: (.+?): (No such file or directory|does not exist in index)", stderr)
    if m:
        return (
            f"patch {name} ({path}) does not apply: file {m.group(1)} is not in the checkout "
            f"(hunks {', '.join(hunks.get(m.group(1), [])) or '?'}); git says: {stderr.strip()}"
        )
    return f"patch {name} ({path}) does not apply: git says: {stderr.strip() or '(nothing)'}"


def apply_diff(tree: Path, patch: dict[str, Any], row_dir: Path) -> Applied:
    name = patch.get("name") or "?"
    path = patch_file(patch, row_dir)
    check = git(["apply", "--check", "--verbose", str(path)], cwd=tree, check=False)
    if check.returncode != 0:
        raise PatchError(_explain_apply_failure(name, path, check.stderr))
    git(["apply", str(path)], cwd=tree)
    return Applied(
        name, "diff", {f: len(h) for f, h in _hunks(path.read_text(encoding="utf-8", errors="replace")).items()}
    )


def apply_replace(tree: Path, patch: dict[str, Any]) -> Applied:
    """Replace the literal text `old` by `new` in every tracked file matching `glob`, and nowhere else.

    Literal, not a regex: the seed's `sed 's/torch.uint8/torch.bool/g'` means the text `torch.uint8`
    (in sed the `.` would match any character).  A replace that matches nothing raises: it means the
    glob or the text is wrong for this commit, and silently doing nothing would hide that.
    """
    name = patch.get("name") or "?"
    glob, old, new = patch.get("glob"), patch.get("old"), patch.get("new")
    if not glob or not old or new is None:
        raise PatchError(
            f"patch {name}: kind=replace needs `glob`, `old` and `new` (got glob={glob!r}, old={old!r}, new={new!r})"
        )
    rx = glob_regex(glob)
    old_b, new_b = old.encode(), new.encode()
    matched, changed = 0, {}
    for rel in tracked_files(tree):
        if not rx.match(rel):
            continue
        matched += 1
        f = tree / rel
        if f.is_symlink() or not f.is_file():
            continue
        data = f.read_bytes()
        n = data.count(old_b)
        if n:
            f.write_bytes(data.replace(old_b, new_b))
            changed[rel] = n
    if not changed:
        raise PatchError(
            f"patch {name}: no file matching {glob!r} contains {old!r} ({matched} files matched the glob); "
            f"fix the patch's glob/old text or impl.commit"
        )
    return Applied(name, "replace", changed)


def apply_patches(
    tree: Path, patches: Iterable[dict[str, Any]], row_dir: Path, log: Callable[[str], None] | None = None
) -> list[Applied]:
    """Apply PATCHES, in order, to the fresh work tree TREE; raise PatchError on the first that fails."""
    done = []
    for patch in patches:
        kind = patch.get("kind") or "diff"
        if kind == "diff":
            applied = apply_diff(tree, patch, row_dir)
        elif kind == "replace":
            applied = apply_replace(tree, patch)
        else:
            raise PatchError(f"patch {patch.get('name') or '?'}: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
        if log:
            log(applied.summary())
        done.append(applied)
    return done
