"""The package's structure: no import cycles among memscan's modules (tools/import_cycles.py
reads them with ast, deferred imports included), and only the Machine facade touches the
native object of a machine."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import memscan

PKG = Path(memscan.__file__).parent
TOOL = Path(__file__).parent.parent / "tools" / "import_cycles.py"


def _tool():
    spec = importlib.util.spec_from_file_location("import_cycles", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_memscan_has_no_import_cycles():
    ic = _tool()
    assert ic.cycles(ic.graph(PKG)) == []


def test_the_tool_finds_a_deferred_cycle(tmp_path):
    ic = _tool()
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    # deferred inside a function: the interpreter never trips on it, the design still does
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import x\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n"
    )
    (pkg / "_native.pyi").write_text("")
    (pkg / "d.py").write_text("from . import _native\n")
    assert ic.cycles(ic.graph(pkg)) == [["pkg.a", "pkg.sub.b"]]
    assert ic.graph(pkg)["pkg.c"] == set()  # type-checking imports are left out
    assert ic.graph(pkg)["pkg.d"] == {"pkg._native"}


def test_only_the_facade_touches_a_machines_native_object():
    users = []
    for path in sorted(PKG.rglob("*.py")):
        if path.name == "machine.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "_core":
                users.append(f"{path.relative_to(PKG)}:{node.lineno}")
    assert users == []
