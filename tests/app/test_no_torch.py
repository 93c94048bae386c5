"""Commands that do not run the model never import torch (it alone costs most of a second and
several hundred MB): info, query by track id, export, journey, --help."""

import json
import subprocess
import sys

import pytest

from app import scan_cmd
from tests.app.library_helpers import tiny_weights
from tests.app.test_library import songs

PROBE = ("import sys; from app.cli import main; rc = main(sys.argv[1:]); "
         "loaded = [m for m in ('torch', 'torchaudio', 'safetensors.torch') if m in sys.modules]; "
         "print('LOADED', loaded); sys.exit(rc)")


@pytest.fixture(scope="module")
def lib_args(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("notorch")
    w = tiny_weights(tmp / "w.safetensors")
    args = ["--library", str(tmp / "lib"), "--weights", str(w)]
    songs(tmp / "music", 6, seconds=7.0)
    assert scan_cmd.main([str(tmp / "music"), "--no-progress", "--device", "cpu", *args]) == 0
    return args


@pytest.mark.parametrize("argv", [
    ["info", "--failures"],
    ["query", "1", "--focus", "drums=1,bass=-0.5", "--json"],
    ["query", "2", "--at", "0:03-0:06", "--device", "cpu"],
    ["export", "1", "-k", "3", "--format", "csv"],
    ["export"],
    ["journey", "1", "4", "--steps", "3", "--floor", "0"],
    ["journey", "1", "--radio", "--steps", "3", "--floor", "0"],
])
def test_reading_commands_leave_torch_unloaded(lib_args, argv):
    r = subprocess.run([sys.executable, "-c", PROBE, *argv, *lib_args], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "LOADED []" in r.stdout, r.stdout[-500:]


@pytest.mark.parametrize("argv", [["--help"], ["info", "--help"], ["query", "--help"], ["export", "--help"],
                                  ["journey", "--help"]])
def test_help_leaves_torch_unloaded(argv):
    probe = ("import sys\nfrom app.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n"
             "    pass\nprint('LOADED', [m for m in ('torch',) if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=120)
    assert "LOADED []" in r.stdout, r.stdout[-500:] + r.stderr[-500:]


def test_a_command_that_embeds_does_load_it(lib_args, tmp_path):
    """The probe can fail: querying by an outside file runs the model."""
    songs(tmp_path, 1, seconds=4.0, start=40)
    r = subprocess.run([sys.executable, "-c", PROBE, "query", str(tmp_path / "song040.wav"), *lib_args],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "'torch'" in r.stdout


def test_a_reader_run_as_the_command_ends_at_once_with_its_output_whole(lib_args, tmp_path):
    """``python -m app`` (like the installed script) ends a reader's process straight after the
    command; what it printed and wrote is all there, and an error keeps its exit code."""
    run = [sys.executable, "-m", "app"]
    inproc = subprocess.run([sys.executable, "-c", "import sys; from app.cli import main; "
                             "sys.exit(main(sys.argv[1:]))", "query", "1", "--json", *lib_args],
                            capture_output=True, text=True, timeout=120)
    direct = subprocess.run([*run, "query", "1", "--json", *lib_args], capture_output=True, text=True,
                            timeout=120)
    assert direct.returncode == inproc.returncode == 0, direct.stderr
    assert direct.stdout == inproc.stdout
    assert len(json.loads(direct.stdout)["results"]) == 5  # the whole document
    out = tmp_path / "list.csv"
    r = subprocess.run([*run, "export", "1", "-k", "3", "--format", "csv", "-o", str(out), *lib_args],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(out.read_text().splitlines()) == 4  # a header and three rows, flushed and closed
    r = subprocess.run([*run, "info", "--library", str(tmp_path / "none")], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "no Partwise library there" in r.stderr
