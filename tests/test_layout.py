"""The package's architecture, read from its imports: the method at the top, rooms below it, no cycles.

Floors, from the bottom: the method (the modules at the top of the package: transforms,
families, model, loss, align, ...), then ``data``, then ``training``, then the rooms that use
them all (``lessons``, ``tools``). A module imports only from its own floor or the floors below;
no module imports the package itself (``avae_tutorial/__init__.py``, the public API, is the
front door, not a dependency); and the import graph has no cycle. Every import counts, also one
inside a function or under ``TYPE_CHECKING``.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import avae_tutorial

PKG = Path(avae_tutorial.__file__).parent
FLOORS = {"": 0, "data": 1, "training": 2, "lessons": 3, "tools": 3}
METHOD_LINES = 1_630  # the method (its public modules), read top to bottom in an afternoon (generate: +11; a pose net over angle bins, its peaks as guesses, a gate per refinement step: +114)


def modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG).with_suffix("")
        parts = [x for x in rel.parts if x != "__init__"]
        out[".".join(parts)] = p
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports (resolved, relative or absolute)."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                up = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                stem = ".".join(up + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "avae_tutorial":
                stem = node.module.partition(".")[2]
            else:
                continue
            targets = [f"{stem}.{a.name}".strip(".") for a in node.names] + [stem]
        elif isinstance(node, ast.Import):
            targets = [a.name.partition(".")[2] for a in node.names if a.name.split(".")[0] == "avae_tutorial"]
            if any(a.name == "avae_tutorial" for a in node.names):
                targets.append("")
        # "from x import name": the module x.name if there is one, else x itself
        for t in targets:
            if t in known:
                found.add(t)
    found.discard(name)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    g = {}
    for name, path in mods.items():
        deps = imports(name, path, known)
        # "from .x import y" where y is a module and x a package: drop the package's own entry
        g[name] = {d for d in deps if not (d in ("", *FLOORS) and any(e.startswith(d + ".") if d else e for e in deps))}
    return g


def floor(name: str) -> int:
    head = name.split(".")[0] if "." in name else ""
    return FLOORS.get(head, 0) if head in FLOORS else 0


def test_no_module_imports_the_package_front_door():
    g = graph()
    bad = sorted(m for m, deps in g.items() if m not in ("", "__main__") and "" in deps)
    assert not bad, f"these modules import avae_tutorial itself (import what you need from its module): {bad}"


def test_imports_never_climb_to_a_higher_floor():
    g = graph()
    bad = sorted((m, d) for m, deps in g.items() if m not in ("", "__main__") for d in deps
                 if d not in FLOORS and floor(d) > floor(m))  # fmt: skip
    assert not bad, f"imports that climb to a higher floor (module, import): {bad}"


def test_the_import_graph_has_no_cycle():
    g = graph()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m):
        state[m] = 1
        path.append(m)
        for d in sorted(g.get(m, ())):
            if d in FLOORS:  # a subpackage's own __init__ holds only a docstring
                continue
            if state.get(d) == 1:
                raise AssertionError(f"import cycle: {' -> '.join(path[path.index(d):] + [d])}")
            if d not in state:
                visit(d)
        path.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)


def test_the_method_sits_at_the_top_and_is_short():
    top = [p for p in PKG.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    names = {p.stem for p in top}
    assert {"transforms", "families", "model", "loss", "align", "refine", "pose"} <= names
    lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in top if not p.name.startswith("_"))
    assert lines <= METHOD_LINES, f"the method's modules hold {lines} lines"
    assert {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(FLOORS) - {""}


def test_the_checker_sees_a_cycle_and_a_climb(tmp_path, monkeypatch):
    """The graph reader itself: a planted cycle and a planted climb are found."""
    pkg = tmp_path / "avae_tutorial"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import x\n")
    (pkg / "b.py").write_text("def f():\n    from .a import y\n")
    (pkg / "data" / "c.py").write_text("from ..a import x\n")
    (pkg / "d.py").write_text("from .data.c import z\n")
    monkeypatch.setattr(sys.modules[__name__], "PKG", pkg)
    g = graph()
    assert g["a"] == {"b"} and g["b"] == {"a"} and g["d"] == {"data.c"} and g["data.c"] == {"a"}
    try:
        test_the_import_graph_has_no_cycle()
    except AssertionError as e:
        assert "a -> b -> a" in str(e)
    else:
        raise AssertionError("the planted cycle was not found")
    try:
        test_imports_never_climb_to_a_higher_floor()
    except AssertionError as e:
        assert "('d', 'data.c')" in str(e) and "('data.c', 'a')" not in str(e)  # up is refused, down is fine
    else:
        raise AssertionError("the planted climb was not found")
