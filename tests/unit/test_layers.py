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
