"""How long does the prepare stage take per seed row, cold and warm? (target: warm under 1 s)

    python bench/prepare.py [--repeats 3] [--files 300] [--commits 5] [--rows detectron2 ...]

For every seed row (conf/impl/*.yaml) the script builds a local git repository -- SYNTHETIC, not the
upstream code -- holding what the row's patches need, then plans the row as a user would
(Hydra compose: impl=ROW hardware=v100x8 impl.repo=<that repository> impl.commit=<its pinned name>)
and times `launcher.prepare.prepare(spec, cache_dir)`:

* cold: an empty cache: `git clone --mirror`, commit resolution, checkout, every patch, marker;
* warm: the same cache again (what every later run of the same recipe pays).

What each synthetic repository holds:
* every row: `--files` filler source files (~3 KB each, spread over directories) over `--commits`
  commits, so clone and checkout move a repository-sized amount of data (the real ones are larger:
  cold times here are a lower bound, warm times do not depend on size);
* maskrcnn_benchmark: .py files containing `torch.uint8` and .cu files containing `AT_CHECK`, so both
  of its replace patches have work to do;
* matterport: files reconstructed from jobs/matterport/hyperparams.diff's own pre-image (each hunk's
  context and removed lines at the line numbers its header names, filler elsewhere), so the diff
  applies with `git apply` as it would on upstream 3deaec. The files are not upstream's: they prove
  the diff path's cost, not that the diff fits upstream (tests/test_prepare_seed.py covers that);
* the pinned commit is reachable the way the row names it: a tag for names that are not hex
  (detectron2's `v0.1.2`), otherwise an abbreviated hash of the synthetic commit, as long as the
  row's own abbreviation (since the synthetic hash differs from upstream's).
torchvision has no repository: its prepare is the recipe hash only, timed too.

Prints per row: cold and warm seconds (median and max over --repeats), and PASS when every warm
prepare is under the target. Exit status 1 on FAIL.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import launcher.config  # noqa: E402,F401  (schema and resolvers, as `python -m launcher` registers them)
from launcher import CONF_DIR, JOBS_DIR  # noqa: E402
from launcher.plan import plan  # noqa: E402
from launcher.prepare import prepare  # noqa: E402

ROWS = (
    "detectron2",
    "mmdetection",
    "maskrcnn_benchmark",
    "tensorpack",
    "simpledet",
    "detectron",
    "matterport",
    "torchvision",
)
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": tempfile.gettempdir(),
}


def sh(*args: str, cwd: Path) -> str:
    return subprocess.run(args, cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True).stdout.strip()


def diff_preimages(diff_text: str) -> dict[str, str]:
    """Files holding each hunk's old lines (context and '-') at the line numbers its header names."""
    files: dict[str, dict[int, str]] = {}
    current, lineno = None, 0
    for line in diff_text.splitlines():
        if line.startswith("+++ "):
            current = line[4:].split("/", 1)[1]
            files.setdefault(current, {})
        elif line.startswith("--- "):
            continue
        elif line.startswith("@@"):
            lineno = int(re.match(r"@@ -(\d+)", line).group(1))
        elif current is not None and line[:1] in (" ", "-"):
            files[current][lineno] = line[1:]
            lineno += 1
    return {
        name: "\n".join(lines.get(i, f"# synthetic filler line {i}") for i in range(1, max(lines) + 6)) + "\n"
        for name, lines in files.items()
    }


def filler(rng: random.Random, i: int) -> str:
    body = "\n".join(f"    x{j} = {rng.random():.12f} * {j}  # synthetic" for j in range(60))
    return f'"""synthetic module {i} (bench/prepare.py)"""\n\n\ndef f{i}():\n{body}\n    return 0\n'


def row_files(row: str) -> dict[str, str]:
    if row == "maskrcnn_benchmark":
        return {
            "maskrcnn_benchmark/modeling/balanced_positive_negative_sampler.py": "m = x.to(torch.uint8)\ntorch.uint8\n",
            "maskrcnn_benchmark/modeling/roi_heads/mask_head/inference.py": "mask = mask.to(dtype=torch.uint8)\n",
            "maskrcnn_benchmark/structures/segmentation_mask.py": "torch.uint8\n",
            "maskrcnn_benchmark/csrc/cuda/deform_conv_cuda.cu": "AT_CHECK(a);\nAT_CHECK(b);\n",
            "maskrcnn_benchmark/csrc/cuda/deform_pool_cuda.cu": "AT_CHECK(c);\n",
        }
    if row == "matterport":
        return diff_preimages((JOBS_DIR / "matterport" / "hyperparams.diff").read_text(encoding="utf-8"))
    return {"README.md": f"synthetic stand-in repository for the {row} row (bench/prepare.py)\n"}


def make_repo(root: Path, row: str, pinned: str, n_files: int, n_commits: int) -> tuple[str, str]:
    """A synthetic repository for ROW; returns (path, the commit name the row pins it by)."""
    repo = root / f"{row}-upstream"
    repo.mkdir(parents=True)
    sh("git", "init", "-q", "-b", "main", cwd=repo)
    rng = random.Random(row)
    per_commit = max(1, n_files // max(1, n_commits))
    for c in range(n_commits):
        for i in range(c * per_commit, min(n_files, (c + 1) * per_commit)):
            p = repo / f"pkg{i % 17}" / f"mod{i}.py"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(filler(rng, i))
        if c == n_commits - 1:
            for name, text in row_files(row).items():
                (repo / name).parent.mkdir(parents=True, exist_ok=True)
                (repo / name).write_text(text)
        sh("git", "add", "-A", cwd=repo)
        sh("git", "commit", "-q", "-m", f"synthetic commit {c}", cwd=repo)
    if re.fullmatch(r"[0-9a-f]{4,40}", pinned):
        name = sh("git", "rev-parse", f"--short={len(pinned)}", "HEAD", cwd=repo)
    else:
        sh("git", "tag", "-a", pinned, "-m", pinned, cwd=repo)
        name = pinned
    sh("git", "commit", "-q", "--allow-empty", "-m", "a later commit the pin must not pick", cwd=repo)
    return str(repo), name


def plan_row(row: str, repo: str | None, commit: str | None, run_dir: Path):
    from hydra import compose, initialize_config_dir

    overrides = [f"impl={row}", "hardware=v100x8"]
    if repo:
        overrides += [f"impl.repo={repo}", f"impl.commit={commit}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose("config", overrides=overrides)
    return plan(cfg, run_dir, overrides=overrides)


def pinned_name(row: str) -> str | None:
    from omegaconf import OmegaConf

    c = OmegaConf.load(CONF_DIR / "impl" / f"{row}.yaml").get("commit")
    return None if c is None else str(c)


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="cold+warm pairs per row (default 3)")
    ap.add_argument("--files", type=int, default=300, help="filler files per synthetic repository (default 300)")
    ap.add_argument("--commits", type=int, default=5, help="commits per synthetic repository (default 5)")
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    ap.add_argument("--target", type=float, default=1.0, help="warm prepare target, seconds (default 1)")
    args = ap.parse_args(argv)
    t_all = time.perf_counter()
    print(
        f"prepare: {args.repeats} cold+warm pairs per row; synthetic local repositories, {args.files} filler "
        f"files over {args.commits} commits (+ the row's patchable files); hardware=v100x8"
    )
    head = f"{'row':<19} {'patches':<10} {'cold med':>9} {'cold max':>9} {'warm med':>9} {'warm max':>9}  verdict"
    print(head)
    print("-" * len(head))
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
        tmp = Path(tmp)
        for row in args.rows:
            pinned = pinned_name(row)
            repo, commit = (
                make_repo(tmp / "upstream", row, pinned, args.files, args.commits) if pinned else (None, None)
            )
            spec = plan_row(row, repo, commit, tmp / "runs" / row)
            kinds = [p.get("kind", "diff") for p in spec.patches]
            patches = ", ".join(f"{kinds.count(k)} {k}" for k in sorted(set(kinds))) or "none"
            cold, warm = [], []
            for r in range(args.repeats):
                cache = tmp / "cache" / f"{row}-{r}"
                t, prepared = timed(lambda: prepare(spec, cache, log=lambda _m: None))
                cold.append(t)
                if repo:
                    tree = Path(prepared.checkout_dir)
                    if not (tree / ".git" / "launcher-prepared.json").is_file():
                        raise SystemExit(f"{row}: prepare returned {tree} without its completion marker")
                t, again = timed(lambda: prepare(spec, cache, log=lambda _m: None))
                warm.append(t)
                if again.checkout_dir != prepared.checkout_dir or again.recipe_hash != prepared.recipe_hash:
                    raise SystemExit(f"{row}: the warm prepare did not reuse the cold one's tree")
                shutil.rmtree(cache, ignore_errors=True)
            ok = max(warm) < args.target
            print(
                f"{row:<19} {patches:<10} {statistics.median(cold):>8.3f}s {max(cold):>8.3f}s "
                f"{statistics.median(warm):>8.3f}s {max(warm):>8.3f}s  {'PASS' if ok else 'FAIL'}"
            )
            verdicts.append((row, ok, max(warm)))
    print(
        f"({time.perf_counter() - t_all:.1f} s in all, repository creation included; cold = clone --mirror + "
        "checkout + patches into an empty cache, warm = the same call again)"
    )
    for row, ok, w in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}: prepare {row}: warm max {w:.3f} s (target < {args.target:g} s)")
    return 0 if all(ok for _, ok, _ in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
