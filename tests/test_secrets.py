"""Issue 21, class 8: credentials are never written. A value that looks like one is refused wherever it comes
from (the command line, a config interpolation), and `impl.env_pass` passes a variable from the submitting
environment by name: the row's command sees it, no file the launcher or Hydra writes holds it."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ROOT, run_launcher

STANDIN = ["hydra.searchpath=[file://" + str(ROOT / "tests" / "conf") + "]", "impl=standin", "scale=full"]
TOKEN = "hf_" + "Zq7" * 10  # the shape of a Hugging Face token; not a real one


def files_holding(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_a_token_on_the_command_line_is_refused_before_anything_is_written(tmp_path):
    p = run_launcher(*STANDIN, f"+impl.env.HF_TOKEN={TOKEN}", cwd=tmp_path, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert "impl.env_pass=[HF_TOKEN]" in p.stderr and TOKEN not in p.stderr + p.stdout
    assert files_holding(tmp_path, TOKEN) == []


def test_a_secret_named_variable_with_a_value_is_refused(tmp_path):
    p = run_launcher(*STANDIN, "+impl.env.WANDB_API_KEY=0123456789abcdef", cwd=tmp_path, timeout=120)
    assert p.returncode == 2 and "impl.env_pass=[WANDB_API_KEY]" in p.stderr, p.stderr
    assert files_holding(tmp_path, "0123456789abcdef") == []


def test_a_token_that_arrives_by_interpolation_is_refused_and_hydras_copies_taken_back(tmp_path):
    p = run_launcher(
        *STANDIN, "+impl.env.MODEL_HUB=${oc.env:LX_TEST_HUB}", cwd=tmp_path, timeout=120, env={"LX_TEST_HUB": TOKEN}
    )
    assert p.returncode == 2 and "looks like a credential" in p.stderr, p.stderr
    assert files_holding(tmp_path, TOKEN) == []


def test_env_pass_gives_the_command_the_value_and_writes_only_its_name(tmp_path):
    cmd = tmp_path / "cmd.sh"
    cmd.write_text(
        'echo "the secret has ${#LX_TEST_SECRET} characters"\n'
        "exec python -m launcher.jobs.standin.standin_impl --format detectron2 --iters 40 --base 0.05 "
        "--noise 0.05 --seed 0 --images-per-iter 2 --truth standin-truth.json\n"
    )
    p = run_launcher(
        *STANDIN,
        f"impl.command=bash {cmd}",
        "+impl.env_pass=[LX_TEST_SECRET]",
        "window.start=10",
        "window.end=30",
        cwd=tmp_path,
        timeout=300,
        env={"LX_TEST_SECRET": TOKEN},
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    logs = list((tmp_path / "outputs").rglob("train.log"))
    assert logs and f"the secret has {len(TOKEN)} characters" in logs[0].read_text()
    assert files_holding(tmp_path / "outputs", TOKEN) == []
    spec = next((tmp_path / "outputs").rglob("spec.json")).read_text()
    assert "LX_TEST_SECRET" in spec  # the name, for the record


def test_env_pass_of_an_unset_variable_is_refused_naming_it(tmp_path):
    p = run_launcher(*STANDIN, "+impl.env_pass=[LX_TEST_NOT_SET_ANYWHERE]", cwd=tmp_path, timeout=120)
    assert p.returncode == 2 and "LX_TEST_NOT_SET_ANYWHERE" in p.stderr and "not set" in p.stderr, p.stderr
