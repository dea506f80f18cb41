"""runtime imports nothing from sensors/graphs/apps; sensors nothing from graphs/apps; graphs nothing from apps."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {"runtime": {"sensors", "graphs", "apps"}, "sensors": {"graphs", "apps"}, "graphs": {"apps"}}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layering(package):
    bad = []
    for path in sorted((REPO / package).rglob("*.py")):
        hits = _imports(path) & FORBIDDEN[package]
        if hits:
            bad.append(f"{path.relative_to(REPO)} imports {sorted(hits)}")
    assert not bad, "layering broken:\n" + "\n".join(bad)


def test_no_assert_statements_in_library_code():
    bad = []
    for package in ("runtime", "sensors", "graphs", "apps"):
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            if any(isinstance(n, ast.Assert) for n in ast.walk(tree)):
                bad.append(str(path.relative_to(REPO)))
    assert not bad, "validate with raise, not assert: " + ", ".join(bad)
