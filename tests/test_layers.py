"""The architecture, kept by reading the source (STYLE.md "The shape we aim for").

The folders of ``responder/`` are layers, lowest first::

    _accel   the optional compiled primitives (and their loader)
    sip      the protocol as data and pure functions
    rules    the rule language
    core     the sans-I/O engine and its parts
    io       sockets and processes that drive the core
    ops      command line, server, logs, metrics, HTTP
    testing  the test toolkit (Responder, clients, pytest plugin)

A module imports modules of its own package or of lower ones, never a higher one; the
core imports no asyncio, socket, signal, selectors or yaml (not even through another
module); nothing outside ``testing`` imports ``testing``; no module imports itself through
others. Imports are read with ``ast``, nothing is imported, so an import inside a function
counts too. The checker is tested on small trees written for the purpose: it must see an
upward import and a cycle.
"""

from __future__ import annotations

import ast
from functools import cached_property
from pathlib import Path

import pytest

PACKAGE = "responder"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
MAX_LINES = 500

# Packages, lowest first; a top-level module of ``responder`` sits at the level given here.
PACKAGES = ["_accel", "sip", "rules", "core", "io", "ops", "testing"]
TOP_LEVEL = {"__init__": "_accel", "__main__": "ops", "launch": "ops"}
NO_IO = ("asyncio", "socket", "signal", "selectors", "yaml")
# Packages whose modules must not reach I/O or YAML, directly or through others.
SANS_IO = ("sip", "core")

# Finer promises inside a layer, checked over everything a module pulls in.
FORBIDDEN = [
    ("sip.parser", ("sip.builder", "sip.auth")),
    ("sip.message", ("sip.parser", "sip.builder")),
    ("sip.uri", ("sip.message", "sip.parser")),
    ("rules.model", ("rules.oneline", "rules.loader", "rules.matcher")),
    ("rules.matcher", ("rules.loader", "rules.oneline")),
    ("core.engine", ("rules.loader",)),
    ("ops.logs", ("ops.server", "ops.cli")),
    ("ops.metrics", ("ops.server", "ops.cli", "ops.http")),
    ("ops.server", ("ops.cli",)),
]


class Tree:
    """The modules of one package directory and what each imports (read, not run)."""

    def __init__(self, root: Path, package: str = PACKAGE) -> None:
        self.root, self.package = root, package

    @cached_property
    def modules(self) -> dict[str, Path]:
        found = {}
        for p in sorted(self.root.rglob("*.py")):
            rel = p.relative_to(self.root).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__" and len(parts) > 1:
                parts = parts[:-1]
            found[".".join(parts)] = p
        return found

    def is_package(self, mod: str) -> bool:
        return self.modules[mod].name == "__init__.py"

    def resolve(self, mod: str, node: ast.ImportFrom) -> str:
        """The absolute dotted name an ``ImportFrom`` refers to (without the imported names)."""
        if node.level == 0:
            return node.module or ""
        parts = [self.package, *([] if mod == "__init__" else mod.split("."))]
        base = parts if self.is_package(mod) else parts[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join([*base, *([node.module] if node.module else [])])

    def internal(self, dotted: str) -> str | None:
        """``responder.rules.model.Step`` -> ``rules.model``; None for a module not ours."""
        if dotted == self.package:
            return "__init__"
        if not dotted.startswith(self.package + "."):
            return None
        name = dotted[len(self.package) + 1 :]
        while name and name not in self.modules:
            name = name.rpartition(".")[0]
        return name or "__init__"

    def imports(self, mod: str) -> tuple[frozenset[str], frozenset[str]]:
        """(our modules, top-level external names) that ``mod`` imports anywhere."""
        return self._imports[mod]

    @cached_property
    def _imports(self) -> dict[str, tuple[frozenset[str], frozenset[str]]]:
        return {mod: self._read(mod) for mod in self.modules}

    def _read(self, mod: str) -> tuple[frozenset[str], frozenset[str]]:
        path = self.modules[mod]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        ours: set[str] = set()
        external: set[str] = set()

        def add(dotted: str) -> None:
            inner = self.internal(dotted)
            if inner is not None:
                ours.add(inner)
            elif dotted:
                external.add(dotted.split(".")[0])

        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(alias.name)
            elif isinstance(node, ast.ImportFrom):
                base = self.resolve(mod, node)
                for alias in node.names:
                    # ``from responder.sip import codes`` imports a module; ``from x import Y``
                    # a name of module x
                    full = f"{base}.{alias.name}"
                    inner = full[len(self.package) + 1 :]
                    add(full if full.startswith(self.package + ".")
                        and inner in self.modules else base)
        ours.discard(mod)
        # A package's __init__ runs before any of its modules: importing ``a.b`` imports ``a``
        # (not counted inside ``a`` itself, where ``a`` is already being imported).
        for dep in list(ours):
            parent = dep.rpartition(".")[0]
            if parent in self.modules and not (mod == parent or mod.startswith(parent + ".")):
                ours.add(parent)
        return frozenset(ours), frozenset(external)

    def reachable(self, mod: str) -> set[str]:
        """Every module importing ``mod`` loads, transitively (``mod`` itself when cyclic)."""
        seen: set[str] = set()
        todo = list(self.imports(mod)[0])
        while todo:
            dep = todo.pop()
            if dep not in seen:
                seen.add(dep)
                todo.extend(self.imports(dep)[0])
        return seen

    def layer(self, mod: str) -> int | None:
        top = mod.split(".")[0]
        top = TOP_LEVEL.get(top, top)
        return PACKAGES.index(top) if top in PACKAGES else None

    # --- the rules, each returns what breaks it --------------------------------
    def unplaced(self) -> list[str]:
        return sorted(m for m in self.modules if self.layer(m) is None)

    def upward(self) -> list[str]:
        out = []
        for mod in self.modules:
            level = self.layer(mod)
            for dep in sorted(self.imports(mod)[0]):
                dl = self.layer(dep)
                if level is not None and dl is not None and dl > level:
                    out.append(f"{mod} -> {dep}")
        return sorted(out)

    def cycles(self) -> list[str]:
        return sorted(m for m in self.modules if m in self.reachable(m))

    def testing_importers(self) -> list[str]:
        return sorted(m for m in self.modules if not m.startswith("testing")
                      and any(d.startswith("testing") for d in self.imports(m)[0]))

    def io_in(self, mod: str) -> dict[str, list[str]]:
        """Which modules (``mod`` or what it loads) import I/O or YAML, and what."""
        out = {}
        for m in {mod, *self.reachable(mod)}:
            names = sorted(set(self.imports(m)[1]) & set(NO_IO))
            if names:
                out[m] = names
        return out


TREE = Tree(ROOT)


# --------------------------------------------------------------------------- the reader itself


def test_the_reader_sees_the_package() -> None:
    found = set(TREE.modules)
    assert {"sip.codes", "sip.parser", "core.engine", "rules.loader", "ops.cli",
            "testing", "testing.controller", "_accel"} <= found
    ours, external = TREE.imports("rules.loader")
    assert {"rules.model", "rules.oneline", "sip.uri"} <= ours
    assert "yaml" in external
    assert "sip.codes" in TREE.imports("rules.model")[0]  # ``from responder.sip import codes``
    assert "__init__" in TREE.imports("ops.cli")[0]       # ``from responder import __version__``
    assert {"core.engine", "sip.parser"} <= TREE.reachable("ops.server")


def test_resolve_relative_imports() -> None:
    node = ast.parse("from ..sip.uri import TOKEN").body[0]
    assert isinstance(node, ast.ImportFrom)
    assert TREE.resolve("rules.oneline", node) == "responder.sip.uri"
    node = ast.parse("from .model import Rule").body[0]
    assert isinstance(node, ast.ImportFrom)
    assert TREE.resolve("rules.oneline", node) == "responder.rules.model"
    assert TREE.resolve("testing", node) == "responder.testing.model"  # a package's own


def _write(root: Path, files: dict[str, str]) -> Tree:
    for name, text in files.items():
        path = root / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return Tree(root / PACKAGE)


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    tree = _write(tmp_path, {
        "__init__.py": "", "sip/__init__.py": "", "ops/__init__.py": "",
        "sip/parser.py": "def f():\n    from responder.ops.cli import main\n",
        "ops/cli.py": "from responder.sip.parser import f\n",
    })
    assert tree.upward() == ["sip.parser -> ops", "sip.parser -> ops.cli"]
    assert tree.cycles() == ["ops.cli", "sip.parser"]


def test_the_checker_sees_a_cycle_inside_a_layer(tmp_path: Path) -> None:
    tree = _write(tmp_path, {
        "__init__.py": "", "core/__init__.py": "",
        "core/a.py": "from . import b\n", "core/b.py": "from .a import X\n",
        "core/c.py": "import socket\n", "core/d.py": "from responder.core import c\n",
    })
    assert tree.upward() == []
    assert tree.cycles() == ["core.a", "core.b"]
    assert tree.io_in("core.d") == {"core.c": ["socket"]}


def test_the_checker_sees_who_imports_testing(tmp_path: Path) -> None:
    tree = _write(tmp_path, {
        "__init__.py": "", "ops/__init__.py": "", "testing/__init__.py": "",
        "ops/cli.py": "import responder.testing\n",
    })
    assert tree.testing_importers() == ["ops.cli"]


# --------------------------------------------------------------------------- the rules


def test_every_module_has_a_layer() -> None:
    assert TREE.unplaced() == [], (
        f"add these modules to a package of {PACKAGES} (or TOP_LEVEL in {Path(__file__).name})")


def test_no_module_imports_a_higher_layer() -> None:
    assert TREE.upward() == []


def test_no_import_cycles() -> None:
    assert TREE.cycles() == []


def test_nothing_imports_testing() -> None:
    assert TREE.testing_importers() == []


@pytest.mark.parametrize("mod", sorted(m for m in TREE.modules
                                       if m.split(".")[0] in SANS_IO))
def test_sip_and_core_do_no_io_and_no_yaml(mod: str) -> None:
    assert TREE.io_in(mod) == {}


def test_only_the_rules_loader_imports_yaml() -> None:
    users = sorted(mod for mod in TREE.modules if "yaml" in TREE.imports(mod)[1])
    assert users == ["rules.loader"]


@pytest.mark.parametrize(("mod", "never"), FORBIDDEN, ids=[f[0] for f in FORBIDDEN])
def test_specific_layer_promises(mod: str, never: tuple[str, ...]) -> None:
    assert mod in TREE.modules
    broken = sorted(n for n in never if n in TREE.reachable(mod))
    assert not broken, f"{mod} imports (directly or not) {broken}"


@pytest.mark.parametrize("path", sorted(TREE.modules.values()),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_are_small(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT.parent)} has {lines} lines"
