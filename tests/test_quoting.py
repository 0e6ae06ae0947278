"""Values reach the job script as data, never as shell (issue 13.4).

Every value a row's command, setup and build lines interpolate (data roots, weights_dir, options, paths,
the launcher's own jobs/ dir) is quoted for the shell where it lands; what is meant to be shell (the
templates themselves, `${lx.torchrun:...}`, `${lx.flag:...}`, `${lx.shell:...}`) is not.  Checked by
running the lines with bash: what a program receives, and that nothing a value says is executed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import launcher.config
from launcher.plan import ConfigError, plan
from launcher.node.script import job_script
from tests.conftest import ROOT

SEED_ROWS = ["detectron2", "mmdetection", "maskrcnn_benchmark", "tensorpack", "simpledet", "detectron", "matterport"]


def nasty(pwned: Path) -> list[str]:
    """Data roots a user may really have (spaces, quotes, non-ASCII) and ones that try to run code."""
    return [
        "/data/my coco/coco",
        '/data/it\'s "quoted"/coco',
        f"/data/$(touch {pwned})/coco",
        f"/data/`touch {pwned}`;touch {pwned}/coco",
        "/data/${HOME} $PATH; echo hi | cat &/coco",
        "/data/Ünïcödé données 数据/coco",
        "/data/tab\there  two  spaces/coco",
        "/data/back\\slash\\n 'a'\"b\"/coco",
    ]


def literal(value: str) -> str:
    """A value as OmegaConf takes it literally (`${` would start an interpolation)."""
    return value.replace("${", "\\${")


def words(line: str, cwd: Path) -> list[str]:
    """The words bash makes of a simple command line (after every expansion), without running it."""
    script = f"set -- {line}\nprintf '%s\\0' \"$@\""
    p = subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True, check=True)
    return p.stdout.split("\0")[:-1]


@pytest.mark.parametrize("row", SEED_ROWS + ["torchvision"])
def test_a_data_root_reaches_every_command_intact_and_never_runs(compose, row, tmp_path):
    """A seed row reads its data through its staged layout (data.stage_dir: in its command, its env or the
    job script's link into its work tree) and its pretrained file from weights_dir; torchvision reads
    data.coco_root itself. Each arrives intact, and nothing in it runs."""
    from launcher.node.script import data_setup_lines

    pwned = tmp_path / "pwned"
    for root in nasty(pwned):
        cfg = compose(f"impl={row}", "hardware=v100x8")
        cfg.data.coco_root = literal(root)
        cfg.data.stage_dir = literal(root + "/stage")
        cfg.weights_dir = literal(root + "/weights")
        spec = plan(cfg, tmp_path / "run")
        argv = words(spec.command, tmp_path)
        if row == "torchvision":
            assert argv[argv.index("--coco-root") + 1] == root
        if row == "tensorpack":
            assert f"DATA.BASEDIR={root}/stage/coco2017/coco" in argv
        if row == "matterport":
            assert f"--dataset={root}/stage/coco2014" in argv
        if row == "detectron2":
            assert spec.env["DETECTRON2_DATASETS"] == f"{root}/stage/coco2017"
        if row not in ("torchvision", "simpledet"):  # the rows whose command names their pretrained file
            assert any(a.endswith(f"{root}/weights/{spec.weights[0]['dest']}") for a in argv), (root, argv)
        work = tmp_path / f"work-{row}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        spec.checkout_dir = str(work)
        for line in data_setup_lines(spec) + spec.setup:  # the data link and setup lines, run as the node runs them
            p = subprocess.run(["bash", "-c", "set -eo pipefail\n" + line], cwd=work, capture_output=True, text=True)
            assert p.returncode == 0, (root, line, p.stderr)
        if (spec.dataset or {}).get("link"):
            assert os.readlink(work / spec.dataset["link"]) == spec.dataset["root"]
            assert spec.dataset["root"].startswith(f"{root}/stage/"), spec.dataset["root"]
        if row == "simpledet":
            assert os.readlink(work / "pretrain_model") == f"{root}/weights/simpledet/pretrain_model"
        assert not pwned.exists(), f"a value was executed: {root!r} in {spec.command!r} / {spec.setup!r}"


def test_the_data_link_line_keeps_the_layout_path_as_data_when_it_refuses(compose, tmp_path):
    """The job script's link into the work tree names the staged layout in its refusal too (a real directory
    where the link goes): the path is printed as it is, and nothing in it runs."""
    from launcher.node.script import data_setup_lines

    pwned = tmp_path / "pwned"
    for root in nasty(pwned):
        cfg = compose("impl=mmdetection", "hardware=v100x8")
        cfg.data.stage_dir = literal(root)
        spec = plan(cfg, tmp_path / "run")
        work = tmp_path / "work"
        shutil.rmtree(work, ignore_errors=True)
        (work / "data" / "coco").mkdir(parents=True)  # a real directory where the link goes
        spec.checkout_dir = str(work)
        (line,) = data_setup_lines(spec)
        p = subprocess.run(["bash", "-c", "set -eo pipefail\n" + line], cwd=work, capture_output=True, text=True)
        assert p.returncode == 2 and f"the data step links it to {spec.dataset['root']}\n" in p.stderr, (root, p.stderr)
        assert not pwned.exists(), (root, line)


@pytest.mark.parametrize("row", ["detectron2", "tensorpack", "simpledet"])
def test_the_lines_that_make_an_environment_keep_their_paths_as_data(compose, row, tmp_path):
    """`python -m launcher.env create` runs a row's impl.environment.create lines with bash: envs_dir and the
    launcher's jobs/ dir arrive as one word each, and nothing in them runs."""
    pwned = tmp_path / "pwned"
    for root in nasty(pwned):
        cfg = compose(f"impl={row}", "hardware=v100x8")
        cfg.envs_dir = literal(root)
        spec = plan(cfg, tmp_path / "run")
        env = spec.environment
        assert env["path"] == f"{root}/{row}"
        first = words(env["create"][0], tmp_path)
        assert first[:4] == ["conda", "env", "create", "-p"] and first[4] == env["path"], (root, first)
        assert first[6].endswith(f"/jobs/{row}/environment.yml")
        for line in env["create"][1:]:
            if line.startswith("conda "):  # the lines that take the env's path (others check the host: tensorpack's)
                assert env["path"] in words(line, tmp_path), (root, line)
        assert not pwned.exists(), (root, env["create"])


def test_default_values_plan_to_the_seed_text(compose, tmp_path):
    """Quoting changes nothing that needs none: a plain path stays as the seed writes it."""
    spec = plan(compose("impl=mmdetection", "hardware=v100x8", "weights_dir=/w"), tmp_path)
    assert spec.command == (
        "./tools/dist_train.sh configs/mask_rcnn/mask_rcnn_r50_caffe_fpn_1x_coco.py 8 "
        f"--work-dir {tmp_path.resolve()}/output "
        "--options model.pretrained=/w/mmcv/resnet50_msra-5891d200.pth"
    )
    spec = plan(compose("impl=simpledet", "hardware=v100x8", "weights_dir=/w"), tmp_path)
    assert spec.setup[-1] == "ln -sfn /w/simpledet/pretrain_model pretrain_model"


def test_the_launcher_checkout_path_is_quoted(compose, tmp_path, monkeypatch):
    """`${lx.jobs:}` names the launcher's own checkout: a space or quote in it is data too."""
    jobs = tmp_path / "my launcher's $(tree)" / "jobs"
    monkeypatch.setattr(launcher.config, "JOBS_DIR", jobs)
    spec = plan(compose("impl=torchvision", "hardware.gpus=0"), tmp_path / "run")
    argv = words(spec.command, tmp_path)
    assert argv[:2] == ["python", f"{jobs}/torchvision/train.py"], argv


def test_a_cache_dir_and_run_dir_with_odd_characters_are_quoted(compose, tmp_path):
    odd = tmp_path / "cache dir 'q' $(x) ü"
    spec = plan(
        compose("impl=mmdetection", "hardware=v100x8", f"cache_dir={hydra_quote(str(odd))}"), tmp_path / "run $x 'y'"
    )
    spec.checkout_dir = str(odd / "trees" / "abc")
    (odd / "trees" / "abc").mkdir(parents=True)
    script = job_script(spec)
    cd = next(line for line in script.splitlines() if line.startswith("cd "))
    assert words(cd[3:], tmp_path) == [str(odd / "trees" / "abc")]


@pytest.mark.parametrize(
    "template, expect",
    [
        ('printf "%s" "${data.coco_root}"', "{v}"),  # inside double quotes
        ("printf '%s' '${data.coco_root}'", "{v}"),  # inside single quotes
        ("printf '%s' pre${data.coco_root}post", "pre{v}post"),  # glued to literal text
        ('printf "%s" "$(basename ${data.coco_root})"', "{b}"),  # in $( ) inside double quotes
        ("printf %s ${data.coco_root} # ${data.coco_root}", "{v}"),  # in a comment
        ("printf %s ${lx.dirname:${data.coco_root}}", "{d}"),  # a data resolver's result
        ('printf %s "`printf %s ${data.coco_root}`"', "{v}"),  # in backticks (bash unescapes there first)
        ("printf '%s|' ${lx.flag:--opt,${data.coco_root}}", "--opt|{v}|"),  # a shell resolver keeps its data quoted
    ],
)
def test_values_are_quoted_for_where_they_land(compose, tmp_path, template, expect):
    pwned = tmp_path / "pwned"
    for v in nasty(pwned) + [f"/x/a\nb; touch {pwned}/coco"]:
        cfg = compose("impl=mmdetection", "hardware=v100x8")
        cfg.data.coco_root = literal(v)
        cfg.impl.setup = [template]
        spec = plan(cfg, tmp_path / "run")
        out = subprocess.run(["bash", "-c", spec.setup[0]], cwd=tmp_path, capture_output=True, text=True)
        assert out.returncode == 0, (v, spec.setup[0], out.stderr)
        want = expect.format(v=v, b=os.path.basename(v), d=os.path.dirname(v))
        assert out.stdout == want, (v, spec.setup[0])
        assert not pwned.exists(), (v, spec.setup[0])


def test_shell_text_from_a_value_needs_lx_shell(compose, tmp_path):
    """A config value is data; one meant as shell says so with ${lx.shell:...} (and is then not quoted)."""
    cfg = compose("impl=mmdetection", "hardware=v100x8")
    OmegaConf.set_struct(cfg, False)
    cfg.impl.options.launch = "echo one; echo two"
    cfg.impl.setup = ["${impl.options.launch}", "${lx.shell:${impl.options.launch}}"]
    spec = plan(cfg, tmp_path)
    assert spec.setup == ["'echo one; echo two'", "echo one; echo two"]


def test_a_value_the_shell_cannot_carry_is_refused(compose, tmp_path):
    cfg = compose("impl=mmdetection", "hardware=v100x8")
    cfg.weights_dir = "/data/nul\0byte"
    with pytest.raises(ConfigError, match="NUL"):
        plan(cfg, tmp_path)


@pytest.mark.workload
def test_the_default_row_runs_with_odd_characters_in_every_path(tmp_path):
    """`python -m launcher` (the torchvision row, a real short training) from a launcher checkout, a run
    dir and a data root whose paths hold spaces, quotes, `$` and non-ASCII; `$(touch ...)` never runs."""
    pytest.importorskip("torchvision")
    tree = tmp_path / "launcher tree 'ü' $HOME"
    for name in ("launcher", "conf", "jobs"):
        shutil.copytree(ROOT / name, tree / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pwned = tmp_path / "pwned"
    root = f"{tmp_path}/no coco $(touch {pwned}) `touch {pwned}`; 'q' ü"
    run_dir = tmp_path / "runs here" / "run 'one' $x"
    env = dict(os.environ, PYTHONPATH=str(tree))
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "launcher",
            "hardware.gpus=0",
            "window.start=1",
            "window.end=3",
            "impl.options.images_per_gpu=1",
            "impl.options.min_size=128",
            "impl.options.max_size=160",
            f"data.coco_root={hydra_quote(root)}",
            f"hydra.run.dir={hydra_quote(str(run_dir))}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    from launcher.rundir import read_result

    r = read_result(run_dir)
    assert r.status == "ok" and r.throughput > 0 and r.data == "synthetic"
    log = (run_dir / "train.log").read_text()
    assert root in log, log[:2000]  # train.py was handed the root intact (it names it when it falls back)
    assert words(r.command, tmp_path)[1] == str(tree.resolve() / "launcher" / "jobs" / "torchvision" / "train.py")
    assert not pwned.exists()


def hydra_quote(value: str) -> str:
    """A command-line override value as Hydra's grammar quotes it (not the shell's)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
