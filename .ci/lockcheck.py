"""Check that this Python environment is exactly what requirements.lock describes.

    python .ci/lockcheck.py [LOCK]

Three checks, each listing every difference it finds:

1. the lock still satisfies what pyproject.toml and requirements.in ask for (a requirement
   edited without ``make lock`` is caught here);
2. every package the lock names for this platform is installed at the locked version, and
   nothing else is installed (pip itself and Partwise aside);
3. ``pip check``: every installed package's own requirements are met, except those the lock
   leaves out on purpose (``override-dependencies`` in pyproject.toml's ``[tool.uv]``).

Exit 0 when all hold, 1 with the differences otherwise. ``make test`` (and so CI) runs it
before the tests.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
NOT_LOCKED = {"pip", "partwise"}  # the installer, and the package under test (installed from the tree)
FIX = ("rebuild the environment from the lock with `make clean setup`; if pyproject.toml or "
       "requirements.in changed on purpose, refresh the lock first with `make lock`")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def read_lock(path: Path) -> list[tuple[str, str, str | None]]:
    """(canonical name, version, marker or None) for every pin in a pip-style lock file; a
    universal lock may pin one name twice under exclusive markers (one per Python range)."""
    pins = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line or line[0] in "# \t-":
            continue
        m = _PIN.match(line)
        if m is None:
            raise ValueError(f"{path}:{n}: not a 'name==version' pin: {line.strip()!r}")
        pins.append((canonicalize_name(m[1]), m[2], m[3]))
    return pins


def applicable(pins: list[tuple[str, str, str | None]]) -> dict[str, str]:
    """{name: version} of the pins whose marker holds on this interpreter and platform."""
    return {name: v for name, v, marker in pins if marker is None or Marker(marker).evaluate()}


def declared_requirements(root: Path) -> list[Requirement]:
    """What pyproject.toml (dependencies and every extra) and requirements.in ask for."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    texts = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        texts += extra
    extra_in = root / "requirements.in"
    if extra_in.is_file():
        texts += [ln.strip() for ln in extra_in.read_text().splitlines()
                  if ln.strip() and not ln.lstrip().startswith("#")]
    return [Requirement(t) for t in texts]


def left_out(root: Path) -> set[str]:
    """Packages the lock leaves out on purpose: overrides whose marker never holds."""
    tool = tomllib.loads((root / "pyproject.toml").read_text()).get("tool", {}).get("uv", {})
    out = set()
    for text in tool.get("override-dependencies", []):
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate():
            out.add(canonicalize_name(req.name))
    return out


def lock_problems(pins: dict[str, str], declared: list[Requirement]) -> list[str]:
    """Declared requirements that the lock's pins do not satisfy."""
    problems = []
    for req in declared:
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req.name}: asked for ({req}) but not in the lock")
        elif not req.specifier.contains(Version(pins[name]), prereleases=True):
            problems.append(f"{req.name}: asked for {req.specifier}, the lock pins {pins[name]}")
    return problems


def installed() -> dict[str, str]:
    """{canonical name: version} of every distribution this interpreter sees."""
    return {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()
            if d.metadata["Name"]}


def env_problems(pins: dict[str, str], have: dict[str, str]) -> list[str]:
    """Differences between the locked pins and the installed distributions."""
    problems = []
    for name, version in sorted(pins.items()):
        if name not in have:
            problems.append(f"{name}: the lock pins {version}, not installed")
        elif Version(have[name]) != Version(version):
            problems.append(f"{name}: installed {have[name]}, the lock pins {version}")
    for name in sorted(set(have) - set(pins) - NOT_LOCKED):
        problems.append(f"{name}: installed {have[name]}, not in the lock")
    return problems


def pip_check_problems(ignore: set[str]) -> list[str]:
    """`pip check` complaints, less those about packages the lock leaves out on purpose."""
    res = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    problems = []
    for line in (res.stdout + res.stderr).splitlines():
        line = line.strip()
        if not line or line.startswith("No broken requirements"):
            continue
        m = re.search(r"requires ([A-Za-z0-9._-]+)", line)
        if m and canonicalize_name(m[1]) in ignore:
            continue
        problems.append(f"pip check: {line}")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    lock = Path(args[0]) if args else ROOT / "requirements.lock"
    try:
        all_pins = read_lock(lock)
    except (OSError, ValueError) as e:
        print(f"lockcheck: {e}", file=sys.stderr)
        return 1
    pins = applicable(all_pins)
    problems = lock_problems(pins, declared_requirements(ROOT))
    problems += env_problems(pins, installed())
    problems += pip_check_problems(left_out(ROOT))
    if problems:
        print(f"lockcheck: this environment ({sys.prefix}) is not what {lock.name} describes:",
              file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        print(f"lockcheck: {FIX}", file=sys.stderr)
        return 1
    print(f"lockcheck: {len(pins)} packages exactly as {lock.name} pins them; pip check clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
