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
    return sorted((ROOT / package).glob("*.py"))


def imported_roots(path: Path, package: str) -> set[str]:
    """The top-level package of every import in the file, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
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
        "from infra.log.codec import create_mapper\n"
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
    @pytest.mark.parametrize("path", modules_of("domain"), ids=lambda p: p.name)
    def test_imports_no_io_or_outer_layer(self, path: Path) -> None:
        forbidden = imported_roots(path, "domain") & DOMAIN_FORBIDDEN

        assert not forbidden, f"domain/{path.name} imports {sorted(forbidden)}"


class TestProjections:
    @pytest.mark.parametrize("path", modules_of("projections"), ids=lambda p: p.name)
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
        assert {"services/cli/main.py", "services/cli/audit.py", "services/cli/auth.py",
                "domain/plan.py", "sdk/agent.py"} <= relative

    @pytest.mark.parametrize("path", product_modules(), ids=lambda p: str(p.relative_to(ROOT)))
    def test_imports_no_benchmark(self, path: Path) -> None:
        package = path.relative_to(ROOT).parts[0]

        assert "bench" not in imported_roots(path, package), (
            f"{path.relative_to(ROOT)} imports bench, which the wheel does not ship")

    def test_the_subcommand_finder_sees_the_cli_commands(self) -> None:
        assert subcommand_calls(CLI_PACKAGE / "main.py")
        assert subcommand_calls(CLI_PACKAGE / "audit.py")
        assert subcommand_calls(CLI_PACKAGE / "auth.py")

    @pytest.mark.parametrize("path", [p for p in product_modules()
                                      if not p.is_relative_to(CLI_PACKAGE)],
                             ids=lambda p: str(p.relative_to(ROOT)))
    def test_only_the_cli_defines_commands(self, path: Path) -> None:
        found = subcommand_calls(path)

        assert not found, (f"{path.relative_to(ROOT)} defines CLI commands ({found}): "
                           f"they belong in services/cli/")
