"""Dependencies point one way, app -> model <- trainer: read every module's imports (ast, without
importing anything) and check that no package reaches where it must not."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {  # package: top-level packages its modules must never import
    "app": {"trainer"},
    "model": {"app", "trainer", "PySide6", "pyqtgraph"},
    "trainer": {"app", "PySide6", "pyqtgraph"},
}


def imported(path: Path) -> set[str]:
    """Top-level names of everything ``path`` imports, at any depth (functions included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_crosses_the_layers(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    bad = {str(f.relative_to(ROOT)): sorted(imported(f) & FORBIDDEN[package]) for f in files}
    assert not {f: b for f, b in bad.items() if b}


def test_the_check_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def late():\n    from trainer.data import render\n    import app.ui\n")
    assert imported(f) == {"trainer", "app"}
