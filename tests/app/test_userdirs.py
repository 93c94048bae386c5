import sys
from pathlib import Path

import pytest

from app.userdirs import (
    LIBRARY_KEY,
    WEIGHTS_KEY,
    demo_cache_dir,
    demo_library_dir,
    in_use,
    to_remember,
)


@pytest.fixture
def home(monkeypatch, tmp_path):
    monkeypatch.delenv("PARTWISE_LIBRARY", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG folders")
def test_folders_follow_xdg(home):
    assert in_use().library == home / "data" / "partwise" / "library"
    assert demo_library_dir() == home / "data" / "partwise" / "demo-library"
    assert demo_cache_dir() == home / "cache" / "partwise" / "demo"


def test_library_and_weights_in_order(home, monkeypatch):
    remembered = {LIBRARY_KEY: "/remembered/lib", WEIGHTS_KEY: "/remembered/w.safetensors"}
    assert in_use(Path("/given"), None, remembered) == in_use(Path("/given"), Path("/remembered/w.safetensors"))
    assert in_use(None, None, remembered).library == Path("/remembered/lib")
    assert in_use(None, Path("/w2"), remembered).weights == Path("/w2")
    assert in_use().weights is None  # the shipped model
    monkeypatch.setenv("PARTWISE_LIBRARY", str(home / "env"))
    assert in_use(None, None, remembered).library == home / "env"  # the environment beats memory
    assert in_use(Path("/given"), None, remembered).library == Path("/given")


def test_what_the_window_remembers(tmp_path):
    assert to_remember(tmp_path, None) == {LIBRARY_KEY: str(tmp_path)}
    w = tmp_path / "w.safetensors"
    assert to_remember(tmp_path, w)[WEIGHTS_KEY] == str(w.resolve())
