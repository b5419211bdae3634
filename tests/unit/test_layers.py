"""Layering: the domain does no I/O and the projections do not reach into infrastructure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

DOMAIN_FORBIDDEN = {"nats", "aiohttp", "orjson", "infra", "services", "projections", "sdk"}
PROJECTIONS_FORBIDDEN = {"nats", "aiohttp", "infra", "services"}


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
        "from infra.codec import create_mapper\n"
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
