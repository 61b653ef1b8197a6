"""The dependency rule of DESIGN section 4, and the python-jose containment rule."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> top-level modules it must never import
FORBIDDEN = {
    "protocol": {
        "asyncio",
        "aiohttp",
        "sqlalchemy",
        "aiosqlite",
        "asyncpg",
        "logging",
        "os",
        "time",
        "random",
        "secrets",
        "socket",
        "sqlite3",
        "keys",
        "hub",
        "clients",
        "witness",
        "schakel",
        "jose",
        "click",
    },
    "keys": {
        "aiohttp",
        "sqlalchemy",
        "aiosqlite",
        "asyncpg",
        "hub",
        "clients",
        "witness",
        "schakel",
        "jose",
    },
    "hub": {"clients", "witness", "schakel"},
    "clients": {"hub", "witness", "schakel", "jose"},
    "witness": {"hub", "clients", "schakel", "jose"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_the_dependency_rule(package: str) -> None:
    sources = _sources(package)
    assert sources, f"{package}/ has no Python sources"
    offending = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & FORBIDDEN[package]) for path in sources
    }
    assert {k: v for k, v in offending.items() if v} == {}


def test_only_hub_tokens_imports_python_jose() -> None:
    users = [
        str(path.relative_to(ROOT))
        for package in ("protocol", "keys", "hub", "clients", "witness", "schakel")
        for path in _sources(package)
        if "jose" in _imports(path)
    ]
    assert users == ["hub/tokens.py"]


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio\nfrom hub.store import Store\nfrom . import sibling\n")
    assert _imports(bad) == {"asyncio", "hub"}
