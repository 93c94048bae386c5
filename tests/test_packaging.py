"""The built distribution carries the shipped model and the demo collection, and an installed
(non-editable) copy runs the demo and a query from a folder outside the source tree."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_ANYWHERE = shutil.ignore_patterns("*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache")
_TOP = {".git", ".venv", "build", "dist", "data", "runs", ".cache"}  # generated, at the top only


def _skip(folder: str, names: list[str]) -> set[str]:
    top = _TOP if Path(folder) == REPO else set()
    return set(_ANYWHERE(folder, names)) | (top & set(names))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the tree (the build leaves nothing behind in the repo)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=_skip)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                          "--no-build-isolation", "-w", str(tmp / "dist"), str(src)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    (built,) = (tmp / "dist").glob("partwise-*.whl")
    return built


def test_the_wheel_carries_the_model_and_the_demo(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"assets/__init__.py", "assets/partwise-default.safetensors",
            "assets/partwise-default.json"} <= names
    demo = sorted(n.removeprefix("assets/demo/") for n in names if n.startswith("assets/demo/"))
    shipped = sorted(p.name for p in (REPO / "assets" / "demo").iterdir() if p.is_file())
    assert demo == shipped
    assert sum(n.endswith(".opus") for n in demo) == 12 and sum(n.endswith(".ogg") for n in demo) == 2
    assert {"COPYING.adoc", "CREDITS-MUSIC", "README.md"} <= set(demo)
    code = {str(p.relative_to(REPO)) for pkg in ("app", "model", "trainer")
            for p in (REPO / pkg).rglob("*.py")}
    assert code <= names, f"modules left out of the wheel: {sorted(code - names)}"
    assert not any(n.startswith("tests/") for n in names)


def test_an_installed_copy_runs_the_demo_and_a_query_outside_the_tree(wheel, tmp_path):
    site = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                          str(site), str(wheel)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "HOME": str(tmp_path / "home"),
           "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    env.pop("PARTWISE_LIBRARY", None)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=600)

    where = run("-c", "import app, assets; print(app.__file__); print(assets.DEFAULT_WEIGHTS)")
    assert where.returncode == 0, where.stderr
    for line in where.stdout.split():  # the installed copy, not the source tree
        assert Path(line).is_relative_to(site) and Path(line).is_file(), line
    demo = run("-m", "app", "demo", "--no-gui", "--limit", "2")
    assert demo.returncode == 0, demo.stderr
    assert "2 searchable track(s)" in demo.stderr
    query = run("-m", "app", "query", "1", "--focus", "drums=1", "--json",
                "--library", str(tmp_path / "data" / "partwise" / "demo-library"))
    assert query.returncode == 0, query.stderr
    results = json.loads(query.stdout)["results"]
    assert len(results) == 1 and results[0]["title"], results  # the other demo song
