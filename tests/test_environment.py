"""The installed environment: the torch/torchaudio pair really loads, and drift from the lock is
caught with the difference named."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements.lock"


def test_torchaudio_compiled_extension_loads_beside_torch():
    import torch
    import torchaudio
    from torchaudio import _extension

    # a mismatched pair fails in here (undefined symbol), not at `import torchaudio`
    assert _extension._IS_TORCHAUDIO_EXT_AVAILABLE, "torchaudio's compiled extension is missing"
    assert isinstance(torch.ops._torchaudio.is_align_available(), bool)
    assert torch.__version__.split("+")[0] == torchaudio.__version__.split("+")[0]


def _lockcheck(lock: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / ".ci" / "lockcheck.py"), str(lock)],
                          capture_output=True, text=True, timeout=120)


def _pin_block(text: str, name: str) -> str:
    """The lines of one pin (the name==version line and its hashes)."""
    m = re.search(rf"^{re.escape(name)}==[^\n]*\n(?:[ \t][^\n]*\n)*", text, re.MULTILINE)
    assert m, f"{name} is not pinned in the lock"
    return m[0]


def test_lockcheck_names_a_version_that_differs_and_a_package_the_lock_lacks(tmp_path):
    text = LOCK.read_text()
    tqdm = _pin_block(text, "tqdm")
    numpy_have = metadata.version("numpy")
    bumped = re.sub(rf"^numpy=={re.escape(numpy_have)}", "numpy==1.26.0", text, flags=re.MULTILINE)
    assert bumped != text
    lock = tmp_path / "requirements.lock"
    lock.write_text(bumped.replace(tqdm, ""))
    res = _lockcheck(lock)
    assert res.returncode == 1
    assert f"numpy: installed {numpy_have}, the lock pins 1.26.0" in res.stderr
    assert f"tqdm: installed {metadata.version('tqdm')}, not in the lock" in res.stderr
    assert "tqdm: asked for (tqdm>=" in res.stderr  # pyproject asks for it, the lock lost it
    assert "make clean setup" in res.stderr


def test_lockcheck_refuses_a_lock_it_cannot_read(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("numpy>=1\n")
    res = _lockcheck(lock)
    assert res.returncode == 1
    assert "requirements.lock:1: not a 'name==version' pin" in res.stderr


def test_the_lock_pins_torch_and_torchaudio_as_one_pair():
    text = LOCK.read_text()
    assert re.search(r"^torch==2\.11\.0 ", text, re.MULTILINE)
    assert re.search(r"^torchaudio==2\.11\.0 ", text, re.MULTILINE)
    assert "--hash=sha256:" in _pin_block(text, "torchaudio")
