"""One registry of log formats: the rows' configs, the parsers and the stand-in writers agree on it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from launcher.jobs.standin import standin_impl
from launcher.jobs.standin.formats import FORMATS, simulate
from launcher.parse import REGISTRY, formats, get_parser

ROOT = Path(__file__).resolve().parents[1]
ROW_FILES = sorted((ROOT / "conf" / "impl").glob("*.yaml")) + sorted((ROOT / "tests" / "conf" / "impl").glob("*.yaml"))
#: the one format whose writer is not a stand-in: the torchvision row's own jobs/torchvision/train.py
REAL_WRITERS = {"torchvision": ROOT / "jobs" / "torchvision" / "train.py"}


def row_format(path: Path) -> str:
    """A row's log.format, resolved the way Hydra would (the stand-in row interpolates its options)."""
    row = OmegaConf.load(path)
    return OmegaConf.select(OmegaConf.create({"impl": row}), "impl.log.format")


def test_every_row_format_has_a_parser_and_every_parser_a_row():
    used = {p.name: row_format(p) for p in ROW_FILES}
    assert len(used) >= 9  # the eight rows and the stand-in row
    unknown = {row: fmt for row, fmt in used.items() if fmt not in REGISTRY}
    assert not unknown, f"rows whose log.format has no parser: {unknown}"
    assert set(REGISTRY) <= set(used.values()), f"parsers no row uses: {set(REGISTRY) - set(used.values())}"


def test_every_parser_has_a_writer_and_every_writer_a_parser():
    assert set(FORMATS) | set(REAL_WRITERS) == set(REGISTRY)
    assert not set(FORMATS) & set(REAL_WRITERS)
    assert all(p.is_file() for p in REAL_WRITERS.values())
    assert "tvbench iter=" in REAL_WRITERS["torchvision"].read_text()  # the line the torchvision parser reads


@pytest.mark.parametrize("fmt", sorted(REGISTRY))
def test_parser_name_is_its_registry_key(fmt):
    assert get_parser(fmt).name == fmt
    assert formats() == sorted(REGISTRY)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_writer_is_read_by_its_parser(fmt):
    sim = simulate(fmt, 120)
    m = get_parser(fmt).measure(sim.log_text(), (40, 100), sim.images_per_iter)
    assert m.throughput > 0 and m.window[0] >= 40


def test_standin_command_offers_every_writer():
    src = Path(standin_impl.__file__).read_text()
    assert "choices=sorted(FORMATS)" in src  # the command line takes its formats from the registry
    conf = OmegaConf.load(ROOT / "tests" / "conf" / "impl" / "standin.yaml")
    assert conf.options.format in FORMATS


@pytest.mark.parametrize("folder", ["launcher/parse", "jobs/standin"])
def test_modules_and_functions_stay_small(folder):
    """Developer guide: no module over 400 lines, no function over 80."""
    for path in sorted((ROOT / folder).glob("*.py")):
        text = path.read_text()
        assert text.count("\n") <= 400, f"{path} has {text.count(chr(10))} lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                assert n <= 80, f"{path}:{node.lineno} {node.name} has {n} lines"
