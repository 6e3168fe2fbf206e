"""Import cycles among memscan's own modules.

Reads every module under python/memscan with ``ast`` (nothing is imported), records each
import of another memscan module, at module level or deferred inside a function (a deferred
import hides a cycle from the interpreter, not from the design), and prints each strongly
connected component of more than one module. Imports under ``if TYPE_CHECKING:`` are type
annotations only and are left out. ``from pkg import name`` counts as an import of
``pkg.name`` when that is a module, else of ``pkg``; a package's ``__init__`` is the package.

Exit status 1 when a cycle exists. ``python tools/import_cycles.py [ROOT]``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Set


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.stmt]:
    stack: List[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def graph(root: Path) -> Dict[str, Set[str]]:
    files = {module_name(root, p): p for p in sorted(root.rglob("*.py"))}
    # A native module (memscan._core) is known by its stub; it imports nothing of ours.
    modules = set(files) | {module_name(root, p) for p in root.rglob("*.pyi")}
    edges: Dict[str, Set[str]] = {m: set() for m in modules}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        package = name if is_pkg else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                targets = []
                for a in node.names:
                    sub = f"{stem}.{a.name}"
                    targets.append(sub if sub in modules else stem)
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    edges[name].add(t)
    return edges


def cycles(edges: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    on: Set[str] = set()
    stack: List[str] = []
    out: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(out)


def main(argv: List[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else Path(__file__).parent.parent / "python/memscan")
    found = cycles(graph(root))
    for comp in found:
        print("cycle:", " <-> ".join(comp))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
