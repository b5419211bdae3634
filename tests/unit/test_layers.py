"""Layering: the domain does no I/O and the projections do not reach into infrastructure."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]

DOMAIN_FORBIDDEN = {"nats", "aiohttp", "orjson", "infra", "services", "projections", "sdk"}
PROJECTIONS_FORBIDDEN = {"nats", "aiohttp", "infra", "services"}
# The agent SDK is a distribution of its own (sdk/pyproject.toml): the standard library,
# its declared dependencies and itself, never the server's code.
SERVER_PACKAGES = {"domain", "projections", "services", "infra", "bench", "tests"}
# Import names of the distributions sdk/pyproject.toml may declare.
IMPORT_NAME = {"nats-py": "nats", "nkeys": "nkeys", "orjson": "orjson"}


def modules_of(package: str) -> list[Path]:
    """Every module of the package, its sub-packages' too."""
    return sorted(path for path in (ROOT / package).rglob("*.py")
                  if "__pycache__" not in path.parts)


def import_statements(path: Path,
                      when_imported: bool = False) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of the file; with `when_imported`, only those that run when
    the module is imported: not those in a function's body (they run when it is called)
    nor those under `if TYPE_CHECKING:` (they never run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    if not when_imported:
        return [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.orelse:
                visit(statement)
        elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            for child in ast.iter_child_nodes(node):
                visit(child)

    visit(tree)
    return found


def imported_roots(path: Path, package: str) -> set[str]:
    """The top-level package of every import in the file, relative imports resolved."""
    roots: set[str] = set()
    for node in import_statements(path):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # `from . import x` stays in the package; `from .. import x` leaves it.
                roots.add(package if node.level == 1 else (node.module or "").split(".")[0])
            elif node.module:
                roots.add(node.module.split(".")[0])
    return roots


def test_the_layers_have_modules_to_check() -> None:
    assert len(modules_of("domain")) >= 5
    assert len(modules_of("projections")) >= 4


def test_the_import_finder_sees_every_kind_of_import(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text(
        "import nats.js\n"
        "import os, aiohttp as http\n"
        "from infra.log.format.codec import create_mapper\n"
        "from . import sibling\n"
        "def f():\n"
        "    import orjson\n"
        "if True:\n"
        "    from services import app\n"
    )

    assert imported_roots(source, "domain") == {
        "nats", "os", "aiohttp", "infra", "domain", "orjson", "services",
    }


class TestDomain:
    @pytest.mark.parametrize("path", modules_of("domain"),
                             ids=lambda p: str(p.relative_to(ROOT)))
    def test_imports_no_io_or_outer_layer(self, path: Path) -> None:
        forbidden = imported_roots(path, "domain") & DOMAIN_FORBIDDEN

        assert not forbidden, f"domain/{path.name} imports {sorted(forbidden)}"


class TestProjections:
    @pytest.mark.parametrize("path", modules_of("projections"),
                             ids=lambda p: str(p.relative_to(ROOT)))
    def test_imports_no_transport_or_infrastructure(self, path: Path) -> None:
        forbidden = imported_roots(path, "projections") & PROJECTIONS_FORBIDDEN

        assert not forbidden, f"projections/{path.name} imports {sorted(forbidden)}"


def sdk_dependencies() -> set[str]:
    """The import names of the dependencies sdk/pyproject.toml declares."""
    project = tomllib.loads((ROOT / "sdk" / "pyproject.toml").read_text())["project"]
    declared = {Requirement(dependency).name for dependency in project["dependencies"]}
    unknown = declared - IMPORT_NAME.keys()
    assert not unknown, f"add the import names of {sorted(unknown)} to IMPORT_NAME"
    return {IMPORT_NAME[name] for name in declared}


def sdk_modules() -> list[Path]:
    """Every module of the SDK, but what a build of sdk/pyproject.toml left in place."""
    return sorted(p for p in (ROOT / "sdk").rglob("*.py")
                  if not {"build", "dist"} & set(p.relative_to(ROOT / "sdk").parts))


class TestSdk:
    def test_it_has_modules_to_check(self) -> None:
        assert {p.name for p in sdk_modules()} >= {
            "__init__.py", "agent.py", "catalog.py", "protocol.py"}

    @pytest.mark.parametrize("path", sdk_modules(),
                             ids=lambda p: str(p.relative_to(ROOT / "sdk")))
    def test_imports_only_the_standard_library_and_its_declared_dependencies(
        self, path: Path
    ) -> None:
        roots = imported_roots(path, "sdk")
        server = roots & SERVER_PACKAGES
        undeclared = roots - sys.stdlib_module_names - sdk_dependencies() - {"sdk", "__future__"}

        assert not server, f"sdk/{path.name} imports the server's {sorted(server)}"
        assert not undeclared, (f"sdk/{path.name} imports {sorted(undeclared)}, which "
                                f"sdk/pyproject.toml does not declare")


# The product: what the `orchestrator` wheel ships (pyproject.toml). The benchmarks in
# bench/ are a tool of their own (`python -m bench`), and every command of the
# `orchestrator` CLI is defined in services/cli/.
PRODUCT_PACKAGES = ("domain", "projections", "services", "infra", "sdk")
CLI_PACKAGE = ROOT / "services" / "cli"
SUBCOMMAND_CALLS = {"add_parser", "add_subparsers"}


def product_modules() -> list[Path]:
    """Every module of the product's packages, but what a build left in place."""
    return sorted(p for package in PRODUCT_PACKAGES for p in (ROOT / package).rglob("*.py")
                  if not {"build", "dist"} & set(p.relative_to(ROOT).parts))


def subcommand_calls(path: Path) -> list[str]:
    """The calls that define argparse subcommands in the file, as `name (line N)`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [f"{node.func.attr} (line {node.lineno})" for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in SUBCOMMAND_CALLS]


class TestProduct:
    def test_it_has_modules_to_check(self) -> None:
        relative = {str(p.relative_to(ROOT)) for p in product_modules()}
        assert {"services/cli/main.py", "services/cli/audit/commands.py", "services/cli/auth.py",
                "domain/tasks/plan.py", "sdk/agent.py"} <= relative

    @pytest.mark.parametrize("path", product_modules(), ids=lambda p: str(p.relative_to(ROOT)))
    def test_imports_no_benchmark(self, path: Path) -> None:
        package = path.relative_to(ROOT).parts[0]

        assert "bench" not in imported_roots(path, package), (
            f"{path.relative_to(ROOT)} imports bench, which the wheel does not ship")

    def test_the_subcommand_finder_sees_the_cli_commands(self) -> None:
        assert subcommand_calls(CLI_PACKAGE / "main.py")
        assert subcommand_calls(CLI_PACKAGE / "audit" / "commands.py")
        assert subcommand_calls(CLI_PACKAGE / "auth.py")

    @pytest.mark.parametrize("path", [p for p in product_modules()
                                      if not p.is_relative_to(CLI_PACKAGE)],
                             ids=lambda p: str(p.relative_to(ROOT)))
    def test_only_the_cli_defines_commands(self, path: Path) -> None:
        found = subcommand_calls(path)

        assert not found, (f"{path.relative_to(ROOT)} defines CLI commands ({found}): "
                           f"they belong in services/cli/")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The modules of `known` the file imports when it is imported (import_statements),
    relative imports resolved: `from a import b` is a.b if that is a module, else a; a
    name that is no module counts as the module it is in. The packages a module lies in
    are not counted: Python runs their __init__ first whoever imports it."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in import_statements(path, when_imported=True):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            source = node.module or ""
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            names = [f"{source}.{alias.name}" for alias in node.names]
            names = [n if n in known else source for n in names]
        for imported in names:
            while imported and imported not in known:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                found.add(imported)
    return found


def import_graph() -> dict[str, set[str]]:
    """The product's modules, each with the product's modules it imports. Cycles are
    looked for among these, and among their folders (services/health, infra/log, ...): a
    loop between two folders is one too, when no single module imports itself round."""
    paths = {module_name(p): p for p in product_modules()}
    known = set(paths)
    return {name: imported_modules(path, known) for name, path in paths.items()}


def folder_of(module: str, packages: set[str]) -> str:
    """A module's unit in the graph of folders: the sub-package it lies in (a package's
    __init__ lies in its own); a module of a top-level package is a unit of its own
    (services/app.py wires every folder together, and services/metrics.py is used by
    all of them: neither makes a loop)."""
    folder = module if module in packages else module.rpartition(".")[0]
    return folder if "." in folder else module


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_the_cycle_finder_sees_loops_and_the_imports_that_run(tmp_path: Path) -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    source = tmp_path / "sample.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import os\n"
        "class C:\n"
        "    import json\n"
        "def f():\n"
        "    import orjson\n"
        "if TYPE_CHECKING:\n"
        "    import nats\n"
        "else:\n"
        "    import aiohttp\n"
    )
    ran = {alias.name for node in import_statements(source, when_imported=True)
           for alias in node.names}
    assert ran == {"TYPE_CHECKING", "os", "json", "aiohttp"}


class TestImportCycles:
    """No product module imports itself round again, and no two folders import each other
    (a shared piece belongs to the folder that owns it, or to a module of its own). Counted:
    the imports that run when a module is imported, class bodies and `if`/`try` blocks
    included; not counted: imports in function bodies, which run later, when called, and
    are the way to defer an import, and those under `if TYPE_CHECKING:`, which never run."""

    def test_the_graph_has_the_product(self) -> None:
        graph = import_graph()
        assert {"domain.tasks.task", "services.app", "infra.log.repository",
                "sdk.agent"} <= set(graph)
        assert "services.health.monitor" in graph["services.health.heartbeats"]

    def test_no_module_imports_itself_round_again(self) -> None:
        assert cycles(import_graph()) == []

    def test_no_two_folders_import_each_other(self) -> None:
        packages = {module_name(p) for p in product_modules() if p.name == "__init__.py"}
        folders: dict[str, set[str]] = {}
        for module, imported in import_graph().items():
            folders.setdefault(folder_of(module, packages), set()).update(
                folder_of(target, packages) for target in imported)
        for folder, imported in folders.items():
            imported.discard(folder)

        assert cycles(folders) == []


# --- the module map (docs/development.md) -----------------------------------------------

MAP = ROOT / "docs" / "development.md"
FIRST_PARTY = {"domain", "projections", "services", "infra", "sdk", "bench"}


def module_map() -> dict[str, set[str]]:
    """room -> the rooms it may import, from the table in docs/development.md."""
    rooms: dict[str, set[str]] = {}
    for line in MAP.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`") and cells[0].endswith("/`"):
            rooms[cells[0].strip("`").rstrip("/")] = {
                name.strip("` ") for name in cells[2].split(",") if name.strip("`— ")}
    return rooms


def room_of_module(dotted: str) -> str:
    """The folder a first-party module (or package) lives in, as a room."""
    parts = dotted.split(".")
    if (ROOT.joinpath(*parts)).is_dir():
        return "/".join(parts)
    return "/".join(parts[:-1])


def rooms_imported(path: Path) -> set[str]:
    found = set()
    for node in import_statements(path):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names
                                     if (ROOT.joinpath(*node.module.split("."),
                                                       alias.name)).is_dir()]
        found |= {room_of_module(name) for name in names if name.split(".")[0] in FIRST_PARTY}
    return found


def product_rooms() -> list[str]:
    return sorted({str(path.parent.relative_to(ROOT))
                   for top in ("domain", "projections", "services", "infra", "sdk")
                   for path in (ROOT / top).rglob("*.py")
                   if "__pycache__" not in path.parts and "examples" not in path.parts})


def test_every_room_is_on_the_module_map() -> None:
    assert set(product_rooms()) == set(module_map())


@pytest.mark.parametrize("room", product_rooms())
def test_a_room_imports_only_what_the_map_allows(room: str) -> None:
    allowed = module_map()[room] | {room}

    def may(imported: str) -> bool:  # a room named allows its sub-rooms
        return any(imported == a or imported.startswith(a + "/") for a in allowed)

    for path in sorted((ROOT / room).glob("*.py")):
        beyond = {imported for imported in rooms_imported(path) if not may(imported)}
        assert not beyond, f"{path.relative_to(ROOT)} imports {sorted(beyond)}, which " \
                           f"docs/development.md does not allow {room}/"
