"""The structure the design promises: no module reaches into another's underscore names,
and the command line stays a thin, fast layer over the library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import flarelens

SRC = Path(flarelens.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _resolve(module: str | None, level: int, here: str, is_package: bool) -> str:
    if not level:
        return module or ""
    base = here.split(".") if is_package else here.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def private_uses(path: Path) -> list[str]:
    """``from flarelens.x import _y`` and ``x._y`` (x a flarelens module) in another module."""
    here = _module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found, modules = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _resolve(node.module, node.level, here, path.name == "__init__.py")
            if not source.startswith("flarelens"):
                continue
            for alias in node.names:
                if _private(alias.name) and source != here:
                    found.append(f"{here}:{node.lineno} imports {source}.{alias.name}")
                elif not _private(alias.name):
                    modules[alias.asname or alias.name] = f"{source}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("flarelens"):
                    modules[alias.asname or alias.name.split(".")[0]] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                and node.value.id in modules and modules[node.value.id] != here):
            found.append(f"{here}:{node.lineno} uses {modules[node.value.id]}.{node.attr}")
    return found


def test_no_module_uses_another_modules_underscore_names():
    offences = [line for path in sorted(SRC.rglob("*.py")) for line in private_uses(path)]
    assert offences == []


def test_the_checker_sees_both_forms(tmp_path):
    # the check itself must bite: both ways of reaching in are reported
    fake = SRC / "_structure_probe.py"
    try:
        fake.write_text("from flarelens.geometry import _x\nfrom flarelens import labels\nlabels._y\n")
        found = private_uses(fake)
    finally:
        fake.unlink()
    assert len(found) == 2 and "geometry._x" in found[0] and "labels._y" in found[1]


def test_help_imports_neither_torch_nor_a_subcommand():
    code = ("import sys; from flarelens.cli import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('flarelens.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
