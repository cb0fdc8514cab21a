"""The architecture, kept by reading the source (STYLE.md "The shape we aim for").

Data flows one way (datagram -> parse -> match -> build -> send): lower layers never
import higher ones, and the sans-I/O core imports no asyncio, socket, signal, selectors
or yaml (only the rules loader touches yaml). Imports are read with ``ast``, nothing is
imported, so a module that would pull in a forbidden import at run time is caught too,
including imports inside functions.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PACKAGE = "responder"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
MAX_LINES = 500

# Layers, lowest first. A module may import modules of its own layer or lower ones, never
# a higher one. Modules named in STYLE.md that do not exist yet have their place already.
LAYERS: list[set[str]] = [
    {"__init__", "codes", "errors", "speedups"},
    {"message", "uri"},
    {"parser", "seeded", "safety"},
    {"auth"},
    {"rules.model"},
    {"rules.oneline", "rules.matcher"},
    {"rules.loader", "builder"},
    {"engine"},
    {"logs", "transport", "metrics", "admin"},
    {"server"},
    {"cli"},
    {"__main__", "testing", "_client", "_client_core", "_expect", "sipvicious"},
    {"pytest_plugin"},
]
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}

# The sans-I/O core: codes ... engine (STYLE.md), plus auth when it exists.
CORE = [
    "codes", "errors", "message", "uri", "parser", "builder", "seeded",
    "rules.model", "rules.oneline", "rules.matcher", "engine", "auth", "speedups",
]
IO_AND_YAML = ("asyncio", "socket", "signal", "selectors", "yaml")

# Specific promises, checked over everything a module pulls in (directly or not).
FORBIDDEN = [
    ("parser", ("engine", "builder", "server", "cli", "transport", "rules.loader")),
    ("message", ("parser", "builder", "engine")),
    ("uri", ("message", "parser")),
    ("seeded", ("parser", "engine", "rules.model")),
    ("rules.model", ("rules.oneline", "rules.loader", "rules.matcher", "engine")),
    ("rules.matcher", ("rules.loader", "rules.oneline", "builder", "engine")),
    ("builder", ("engine", "parser", "transport", "server", "cli", "rules.loader")),
    ("engine", ("transport", "server", "cli", "logs", "rules.loader")),
    ("transport", ("server", "cli")),
    ("logs", ("server", "cli", "transport")),
    ("server", ("cli",)),
]


# --------------------------------------------------------------------------- reading


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return ".".join(rel.parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(mod: str, node: ast.ImportFrom) -> str:
    """The absolute dotted name an ``ImportFrom`` refers to (without the imported names)."""
    if node.level == 0:
        return node.module or ""
    is_package = modules()[mod].name == "__init__.py"
    parts = [PACKAGE, *([] if mod == "__init__" else mod.split("."))]
    # the package holding this module; each extra dot climbs one more level
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _internal(dotted: str) -> str | None:
    """``responder.rules.model`` -> ``rules.model``; None when it is not a module of ours."""
    if dotted == PACKAGE:
        return "__init__"
    if not dotted.startswith(PACKAGE + "."):
        return None
    name = dotted[len(PACKAGE) + 1 :]
    while name and name not in modules():
        name = name.rpartition(".")[0]  # ``responder.rules.model.Step`` and the like
    return name or "__init__"


@cache
def imports(mod: str) -> tuple[frozenset[str], frozenset[str]]:
    """(our modules, top-level external names) that ``mod`` imports anywhere in its code."""
    tree = ast.parse(modules()[mod].read_text(encoding="utf-8"), str(modules()[mod]))
    ours: set[str] = set()
    external: set[str] = set()

    def add(dotted: str) -> None:
        inner = _internal(dotted)
        if inner is not None:
            ours.add(inner)
        elif dotted:
            external.add(dotted.split(".")[0])

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(mod, node)
            for alias in node.names:
                # ``from . import codes`` imports a module; ``from .model import Rule`` a name
                full = f"{base}.{alias.name}"
                if full.startswith(PACKAGE + ".") and full[len(PACKAGE) + 1 :] in modules():
                    add(full)
                else:
                    add(base)
    ours.discard(mod)
    return frozenset(ours), frozenset(external)


def reachable(mod: str) -> set[str]:
    """Every module of ours that importing ``mod`` loads, transitively (``mod`` itself only
    when it is part of an import cycle)."""
    seen: set[str] = set()
    todo = list(imports(mod)[0])
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo.extend(imports(dep)[0])
    return seen


def closure(mod: str) -> set[str]:
    return reachable(mod) - {mod}


def existing(names: list[str]) -> list[str]:
    return [n for n in names if n in modules()]


# --------------------------------------------------------------------------- the reader itself


def test_the_reader_sees_the_package() -> None:
    found = set(modules())
    assert {"codes", "parser", "engine", "rules.loader", "rules.model", "cli"} <= found
    ours, external = imports("rules.loader")
    assert {"rules.model", "rules.oneline", "uri", "message"} <= ours  # message: in a function
    assert "yaml" in external
    assert "codes" in imports("rules.model")[0]  # ``from .. import codes``
    assert "codes" in imports("cli")[0]  # ``from . import __version__, codes``
    assert "__init__" in imports("cli")[0]  # ... and __version__ from the package
    assert "engine" in closure("server") and "parser" in closure("server")


def test_resolve_relative_imports() -> None:
    node = ast.parse("from ..uri import TOKEN").body[0]
    assert isinstance(node, ast.ImportFrom)
    assert _resolve("rules.oneline", node) == "responder.uri"
    node = ast.parse("from .model import Rule").body[0]
    assert isinstance(node, ast.ImportFrom)
    assert _resolve("rules.oneline", node) == "responder.rules.model"
    assert _resolve("engine", node) == "responder.model"


# --------------------------------------------------------------------------- the rules


def test_every_module_has_a_layer() -> None:
    unknown = sorted(set(modules()) - set(LEVEL))
    assert not unknown, (
        f"modules {unknown} have no layer: add them to LAYERS in {Path(__file__).name} "
        "at the level that shows what they may import"
    )


@pytest.mark.parametrize("mod", sorted(modules()))
def test_no_module_imports_a_higher_layer(mod: str) -> None:
    if mod not in LEVEL:
        pytest.fail(f"{mod} has no layer (see test_every_module_has_a_layer)")
    higher = sorted(dep for dep in imports(mod)[0] if LEVEL.get(dep, len(LAYERS)) > LEVEL[mod])
    assert not higher, f"{mod} (layer {LEVEL[mod]}) imports higher layers: {higher}"


def test_no_import_cycles() -> None:
    cycles = sorted(mod for mod in modules() if mod in reachable(mod))
    assert not cycles, f"modules that import themselves through others: {cycles}"


@pytest.mark.parametrize("mod", existing(CORE))
def test_core_does_no_io_and_no_yaml(mod: str) -> None:
    direct = sorted(set(imports(mod)[1]) & set(IO_AND_YAML))
    assert not direct, f"{mod} imports {direct}"
    pulled = {dep: sorted(set(imports(dep)[1]) & set(IO_AND_YAML)) for dep in closure(mod)}
    pulled = {dep: names for dep, names in pulled.items() if names}
    assert not pulled, f"{mod} pulls in I/O or yaml through {pulled}"


def test_only_the_rules_loader_imports_yaml() -> None:
    users = sorted(mod for mod in modules() if "yaml" in imports(mod)[1])
    assert users == ["rules.loader"]


@pytest.mark.parametrize(("mod", "never"), [f for f in FORBIDDEN if f[0] in modules()],
                         ids=[f[0] for f in FORBIDDEN if f[0] in modules()])
def test_specific_layer_promises(mod: str, never: tuple[str, ...]) -> None:
    loaded = closure(mod)
    broken = sorted(n for n in never if n in loaded)
    assert not broken, f"{mod} imports (directly or not) {broken}"


@pytest.mark.parametrize("path", sorted(modules().values()), ids=lambda p: module_name(p))
def test_modules_are_small(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT.parent)} has {lines} lines"
