"""The system libraries Qt's X11 platform plugin needs, checked before Qt tries to load it.

Qt ends the process (abort, no exception) when its platform plugin fails to load, so the window
commands look first: ``ldd`` on the plugin (``libqxcb.so``) and on the library behind it
(``libQt6XcbQpa.so.6``) in the installed PySide6 wheel lists every shared library they need,
directly or through another; any it cannot find is named, with the Debian/Ubuntu package that
provides it. This module imports no Qt.

``XCB_PACKAGES`` maps each library the plugin needs from the system (not from the wheel) to its
package. It is derived from the installed wheel, not written from memory:

    python -m app.ui.qtdeps --derive     # on a Debian/Ubuntu machine with the libraries present

prints the table anew (``dpkg -S`` of each library ``ldd`` resolves); a test checks that it
covers every library the installed plugin needs. ``python -m app.ui.qtdeps --packages`` prints
the package list (``make sysdeps`` installs it); with no option it checks this machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

# soname -> Debian/Ubuntu package: PySide6-Essentials 6.12 on Debian 12, from
# `python -m app.ui.qtdeps --derive`; run it again when PySide6 changes (a test says when)
XCB_PACKAGES: dict[str, str] = {
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libGLX.so.0": "libglx0",
    "libGLdispatch.so.0": "libglvnd0",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libXau.so.6": "libxau6",
    "libXdmcp.so.6": "libxdmcp6",
    "libbrotlicommon.so.1": "libbrotli1",
    "libbrotlidec.so.1": "libbrotli1",
    "libbsd.so.0": "libbsd0",
    "libc.so.6": "libc6",
    "libcap.so.2": "libcap2",
    "libdbus-1.so.3": "libdbus-1-3",
    "libdl.so.2": "libc6",
    "libexpat.so.1": "libexpat1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libgcc_s.so.1": "libgcc-s1",
    "libgcrypt.so.20": "libgcrypt20",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgpg-error.so.0": "libgpg-error0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "liblz4.so.1": "liblz4-1",
    "liblzma.so.5": "liblzma5",
    "libm.so.6": "libc6",
    "libmd.so.0": "libmd0",
    "libpcre2-8.so.0": "libpcre2-8-0",
    "libpng16.so.16": "libpng16-16",
    "libpthread.so.0": "libc6",
    "libstdc++.so.6": "libstdc++6",
    "libsystemd.so.0": "libsystemd0",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb.so.1": "libxcb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libz.so.1": "zlib1g",
    "libzstd.so.1": "libzstd1",
}

Ldd = Callable[[Path], str]


def plugin_files() -> list[Path]:
    """The xcb platform plugin and the Qt library behind it, in the installed PySide6 wheel."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return []
    qt = Path(next(iter(spec.submodule_search_locations))) / "Qt"
    files = [qt / "plugins" / "platforms" / "libqxcb.so", qt / "lib" / "libQt6XcbQpa.so.6"]
    return [f for f in files if f.is_file()]


def run_ldd(path: Path) -> str:
    """``ldd``'s report on ``path`` ('' when ldd is not there: the check is then skipped)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return ""
    res = subprocess.run([ldd, str(path)], capture_output=True, text=True, timeout=30)
    return res.stdout


_LINE = re.compile(r"^\s*(\S+)\s+=>\s+(not found|\S+)")


def system_libraries(files: Sequence[Path], ldd: Ldd | None = None) -> dict[str, str | None]:
    """{soname: resolved path, or None when not found} of every library ``files`` need from
    outside the PySide6 wheel, directly or through another library."""
    ldd = ldd or run_ldd
    wheel = [f.parents[2] if f.parent.name == "platforms" else f.parents[1] for f in files]
    found: dict[str, str | None] = {}
    for f in files:
        for line in ldd(f).splitlines():
            m = _LINE.match(line)
            if m is None:
                continue
            soname, where = m[1], m[2]
            if where == "not found":
                found[soname] = None
            elif not any(Path(where).is_relative_to(w) for w in wheel):
                found.setdefault(soname, where)
    return found


def missing_libraries(ldd: Ldd | None = None) -> list[str]:
    """Sonames the xcb plugin needs that this machine lacks (empty when all are there)."""
    return sorted(s for s, where in system_libraries(plugin_files(), ldd).items() if where is None)


def install_hint(missing: Sequence[str]) -> str:
    """One message: every missing library and the apt-get line that installs them."""
    pkgs = sorted({XCB_PACKAGES[s] for s in missing if s in XCB_PACKAGES})
    unknown = [s for s in missing if s not in XCB_PACKAGES]
    msg = (f"Qt's X11 platform plugin needs {len(missing)} system "
           f"librar{'y' if len(missing) == 1 else 'ies'} this machine lacks: {', '.join(missing)}")
    if pkgs:
        msg += f". Install them (Debian/Ubuntu): sudo apt-get install {' '.join(pkgs)}"
    if unknown:
        msg += f". No package known for {', '.join(unknown)}: install it with your system's tools"
    return msg + "; then start again"


def display_problem(ldd: Ldd | None = None) -> str | None:
    """Why Qt would abort on start on this Linux machine (None when it should start)."""
    if not sys.platform.startswith("linux"):
        return None
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform and not platform.startswith("xcb"):
        return None  # offscreen, wayland, vnc...: not the xcb plugin
    if not platform:
        if os.environ.get("WAYLAND_DISPLAY"):
            return None
        if not os.environ.get("DISPLAY"):
            return ("no graphical display (DISPLAY/WAYLAND_DISPLAY unset): run it in a desktop "
                    "session, or use the command line (partwise --help)")
    missing = missing_libraries(ldd)
    return install_hint(missing) if missing else None


def _dpkg_candidates(where: str) -> list[str]:
    """The names dpkg may know a library by: as found, resolved, with and without /usr."""
    out = []
    for path in (where, os.path.realpath(where)):
        out += [path, path.removeprefix("/usr") if path.startswith("/usr/") else "/usr" + path]
    return list(dict.fromkeys(out))


def derive(ldd: Ldd | None = None) -> dict[str, str]:
    """The soname -> package table from the installed wheel, with ``dpkg -S`` (Debian/Ubuntu)."""
    table: dict[str, str] = {}
    for soname, where in sorted(system_libraries(plugin_files(), ldd).items()):
        if where is None:
            raise SystemExit(f"{soname} is not installed here: install it, then derive again")
        out = ""
        for path in _dpkg_candidates(where):
            out = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True).stdout
            if out:
                break
        if not out:
            raise SystemExit(f"{where}: no Debian package owns it")
        table[soname] = out.split(":", 1)[0].strip()
    return table


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.ui.qtdeps", description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--packages", action="store_true", help="print the Debian/Ubuntu packages")
    g.add_argument("--derive", action="store_true", help="print the table, derived from the wheel")
    args = p.parse_args(argv)
    if args.packages:
        print(" ".join(sorted(set(XCB_PACKAGES.values()))))
        return 0
    if args.derive:
        files = plugin_files()
        print(f"# from {', '.join(f.name for f in files)}")
        print("XCB_PACKAGES: dict[str, str] = {")
        for soname, pkg in derive().items():
            print(f'    "{soname}": "{pkg}",')
        print("}")
        return 0
    missing = missing_libraries()
    if missing:
        print(install_hint(missing), file=sys.stderr)
        return 1
    print(f"the xcb platform plugin finds every library it needs ({len(XCB_PACKAGES)} known)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
