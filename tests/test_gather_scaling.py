"""The scaling view (launcher/gather/scaling.py) from result files laid out as a sweep over nodes and ranks.

The result files are written here by hand (fixtures: the figures are made up, named so); the real sweep over
nodes on the CI cluster is tests/test_multinode.py::test_a_scaling_sweep_over_nodes_gathers_into_a_scaling_table.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.gather import gather, summary
from launcher.gather.scaling import has_curve, plot_scaling, render_scaling, scaling_table
from launcher.rundir import Result, write_result
from tests.conftest import ROOT


def fixture_run(
    base: Path,
    name: str,
    throughput: float,
    *,
    nodes: int,
    ranks: int,
    impl: str = "torchvision",
    recipe: str | None = None,
) -> None:
    d = base / name
    d.mkdir(parents=True)
    hosts = [f"node{i}" for i in range(1, nodes + 1)]
    write_result(
        d,
        Result(
            impl=impl,
            hardware="h100x8",
            backend="slurm",
            status="ok",
            throughput=throughput,
            window=[100, 500],
            window_requested=[100, 500],
            images_per_iter=2 * ranks,
            gpus=ranks // nodes,
            scale="full",
            recipe_hash=recipe,
            nodes=nodes,
            ranks=ranks,
            hosts=hosts,
            host=hosts[0],
            method="fixture",
            run_dir=str(d),
            error_bound=0.001,
        ),
    )


@pytest.fixture
def sweep(tmp_path):
    # made-up figures: 8 ranks on one node, 16 on two, 32 on four, and one 1-rank run above linear's baseline
    fixture_run(tmp_path, "0_torchvision", 100.0, nodes=1, ranks=8)
    fixture_run(tmp_path, "1_torchvision", 190.0, nodes=2, ranks=16, recipe="r2")  # its command differs: --nnodes
    fixture_run(tmp_path, "2_torchvision", 210.0, nodes=2, ranks=16, recipe="r2")  # a repeat of the 2-node size
    fixture_run(tmp_path, "3_torchvision", 330.0, nodes=4, ranks=32)
    fixture_run(tmp_path, "4_detectron2", 60.0, nodes=1, ranks=8, impl="detectron2", recipe="abc")
    fixture_run(tmp_path, "5_detectron2", 130.0, nodes=2, ranks=16, impl="detectron2", recipe="abc")
    return tmp_path


def test_efficiency_against_the_smallest_run_of_the_same_row(sweep):
    runs, problems = gather([sweep], db=None, job_state=False)
    assert not problems
    t = scaling_table(runs)
    tv = t[t["impl"] == "torchvision"].set_index("ranks")
    assert list(tv.index) == [8, 16, 32] and list(tv["nodes"]) == [1, 2, 4]
    assert tv.loc[16, "runs"] == 2 and tv.loc[16, "throughput"] == pytest.approx(200.0)  # the repeats' mean
    assert tv.loc[16, "per_rank"] == pytest.approx(12.5) and tv.loc[16, "speedup"] == pytest.approx(2.0)
    assert tv.loc[16, "efficiency"] == pytest.approx(1.0) and tv.loc[16, "flag"] == ""
    assert tv.loc[32, "efficiency"] == pytest.approx(330 / 400) and tv.loc[8, "efficiency"] == pytest.approx(1.0)
    assert tv.loc[32, "hosts"] == "node1, node2, node3, node4"
    d2 = t[t["impl"] == "detectron2"].set_index("ranks")
    assert d2.loc[16, "efficiency"] == pytest.approx(130 / 120) and d2.loc[16, "flag"].startswith("above linear")
    assert has_curve(t)


def test_the_seed_table_never_averages_sizes_and_names_the_nodes(sweep):
    runs, _ = gather([sweep], db=None, job_state=False)
    table = summary(runs)
    tv = table[(table["impl"] == "torchvision") & table["status"].astype(str).str.startswith("ok")]
    assert sorted(tv["hardware"]) == ["h100x8", "h100x8 x 2 nodes", "h100x8 x 4 nodes"]
    assert sorted(tv["throughput"]) == [100.0, 200.0, 330.0]


def test_render_and_plot(sweep, tmp_path):
    runs, _ = gather([sweep], db=None, job_state=False)
    t = scaling_table(runs)
    text = render_scaling(t, "rst")
    assert "Efficiency" in text and "above linear" in text and "82%" in text
    assert json.loads(render_scaling(t, "json"))[0]["ranks"] == 8
    assert render_scaling(t, "csv").splitlines()[0].startswith("impl,hardware,scale,nodes,ranks")
    png = plot_scaling(t, tmp_path / "plots" / "scaling.png")
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gather_cli_scaling_view_keeps_the_seed_table_the_default(sweep, tmp_path):
    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "launcher.gather", str(sweep), "--no-record", *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )

    default = cli()
    assert default.returncode == 0 and "Detectron2" in default.stdout and "Efficiency" not in default.stdout
    p = cli("--view", "scaling", "--plot", str(tmp_path / "s.png"))
    assert p.returncode == 0, p.stderr
    assert "img/s per rank" in p.stdout and (tmp_path / "s.png").is_file()
    assert "Traceback" not in p.stderr


def test_no_ok_runs_says_how_to_make_a_curve(tmp_path):
    runs, _ = gather([tmp_path], db=None, job_state=False)
    assert "No scaling to show" in render_scaling(scaling_table(runs))
