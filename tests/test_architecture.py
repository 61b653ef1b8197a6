"""The dependency rule of DESIGN section 4, and the python-jose containment rule."""

from __future__ import annotations

import ast
import functools
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
        "schakel",
        "jose",
        "click",
    },
    "keys": {"aiohttp", "sqlalchemy", "aiosqlite", "asyncpg", "hub", "clients", "schakel", "jose"},
    "hub": {"clients", "schakel", "pseudonymiser"},
    "clients": {"hub", "schakel", "jose", "pseudonymiser"},
    # A pseudonymisation service is run by another party than the hub's operator: it shares
    # protocol and keys with the others, and nothing else.
    "pseudonymiser": {"hub", "clients", "schakel", "jose"},
}


@functools.cache
def _imports(path: Path) -> frozenset[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return frozenset(names)


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
        for package in ("protocol", "keys", "hub", "clients", "pseudonymiser", "schakel")
        for path in _sources(package)
        if "jose" in _imports(path)
    ]
    assert users == ["hub/tokens.py"]


def test_only_protocol_ristretto_imports_rbcl() -> None:
    """rbcl writes a copy of libsodium to /tmp on import; protocol/ristretto.py removes it."""
    users = [
        str(path.relative_to(ROOT))
        for package in ("protocol", "keys", "hub", "clients", "pseudonymiser", "schakel", "bench")
        for path in _sources(package)
        if "rbcl" in _imports(path)
    ]
    assert users == ["protocol/ristretto.py"]


def test_the_client_side_of_the_services_imports_nothing_else_from_clients() -> None:
    """clients/pseudonymise.py is wired into the organisation later; it stands alone now."""
    tree = ast.parse((ROOT / "clients" / "pseudonymise.py").read_text(encoding="utf-8"))
    modules = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert not [name for name in modules if name.split(".")[0] == "clients"]


def test_importing_the_group_leaves_no_copy_of_libsodium_behind(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = f"import glob, protocol.ristretto; print(len(glob.glob('{tmp_path}/tmp*')))"
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={"TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "0"


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio\nfrom hub.store import Store\nfrom . import sibling\n")
    assert _imports(bad) == {"asyncio", "hub"}
