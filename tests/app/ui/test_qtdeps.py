"""The system libraries Qt's xcb plugin needs: the table, the check, and what the commands say."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.ui import qtdeps

REPO = Path(__file__).resolve().parents[3]
HAVE_PLUGIN = sys.platform.startswith("linux") and bool(qtdeps.plugin_files())
needs_plugin = pytest.mark.skipif(not HAVE_PLUGIN or shutil.which("ldd") is None,
                                  reason="needs Linux, ldd and PySide6's xcb plugin")

FAKE_LDD = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tlibQt6Gui.so.6 => {wheel}/Qt/lib/libQt6Gui.so.6 (0x00007f11)
\tlibxcb-icccm.so.4 => not found
\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f12)
\tlibxcb-keysyms.so.1 => not found
\tlibmystery.so.9 => not found
\t/lib64/ld-linux-x86-64.so.2 (0x00007f13)
"""


def fake_ldd(path: Path) -> str:
    return FAKE_LDD.format(wheel=qtdeps.plugin_files()[0].parents[2])


@needs_plugin
def test_the_table_covers_every_library_the_installed_plugin_needs():
    needed = qtdeps.system_libraries(qtdeps.plugin_files())
    assert {"libxcb.so.1", "libxcb-cursor.so.0", "libxcb-icccm.so.4"} <= set(needed) | set(
        qtdeps.XCB_PACKAGES), "ldd listed nothing: the check would pass blindly"
    uncovered = sorted(set(needed) - set(qtdeps.XCB_PACKAGES))
    assert not uncovered, (f"PySide6's xcb plugin now needs {uncovered}: derive the table again "
                           "(python -m app.ui.qtdeps --derive)")


@needs_plugin
def test_libraries_inside_the_wheel_are_not_asked_of_the_system():
    needed = qtdeps.system_libraries(qtdeps.plugin_files(), fake_ldd)
    assert needed == {"libxcb-icccm.so.4": None, "libxcb.so.1": "/lib/x86_64-linux-gnu/libxcb.so.1",
                      "libxcb-keysyms.so.1": None, "libmystery.so.9": None}


@needs_plugin
def test_missing_libraries_are_named_with_the_line_that_installs_them(monkeypatch):
    monkeypatch.setattr(qtdeps.sys, "platform", "linux")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    msg = qtdeps.display_problem(fake_ldd)
    assert "3 system libraries" in msg
    assert "lacks: libmystery.so.9, libxcb-icccm.so.4, libxcb-keysyms.so.1." in msg
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1." in msg
    assert "No package known for libmystery.so.9" in msg
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")  # not the xcb plugin: nothing to check
    assert qtdeps.display_problem(fake_ldd) is None
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    assert "libxcb-keysyms.so.1" in qtdeps.display_problem(fake_ldd)


def test_no_display_is_said_plainly(monkeypatch):
    monkeypatch.setattr(qtdeps.sys, "platform", "linux")
    for var in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    assert "no graphical display" in qtdeps.display_problem(lambda p: "")


def test_packages_option_lists_the_table():
    pkgs = subprocess.run([sys.executable, "-m", "app.ui.qtdeps", "--packages"], check=True,
                          capture_output=True, text=True, cwd=REPO).stdout.split()
    assert pkgs == sorted(set(qtdeps.XCB_PACKAGES.values()))
    assert {"libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1", "libxkbcommon-x11-0"} <= set(pkgs)


CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from app.ui import qtdeps
    real = qtdeps.run_ldd
    def ldd(path):
        return real(path) + "\\tlibxcb-icccm.so.4 => not found\\n\\tlibxcb-keysyms.so.1 => not found\\n"
    qtdeps.run_ldd = ldd
    if sys.argv[1] == "gui":
        from app.ui.main import main
        rc = main([])
    else:
        from app.demo import main
        rc = main(["--library", sys.argv[2], "--folder", sys.argv[3]])
    assert "PySide6.QtWidgets" not in sys.modules, "Qt was loaded before the check"
    sys.exit(rc)
""")


@needs_plugin
@pytest.mark.parametrize("command", ["gui", "demo"])
def test_window_commands_stop_before_qt_when_a_library_is_missing(command, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env["DISPLAY"] = ":77"
    res = subprocess.run([sys.executable, "-c", CHILD, command, str(tmp_path / "lib"),
                          str(tmp_path / "audio")], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=120)
    assert res.returncode == 1, res.stderr
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1, err  # one message, no Qt abort text after it
    assert "libxcb-icccm.so.4, libxcb-keysyms.so.1" in err
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1" in err
    assert not (tmp_path / "lib").exists()  # nothing prepared before the check
