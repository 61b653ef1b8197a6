"""The dependency rule of DESIGN section 4, no import circles inside a package, and the
python-jose containment rule.

The desk (``desk/``, each organisation's web application) is a client: it imports
``protocol``, ``keys`` and the client library (and that only in ``desk/adapter.py``, so
that the library's changes meet the desk in one place); nothing imports the desk.
"""

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
        "witness",
        "schakel",
        "jose",
        "click",
        "desk",
    },
    "keys": {
        "aiohttp",
        "sqlalchemy",
        "aiosqlite",
        "asyncpg",
        "hub",
        "clients",
        "desk",
        "pseudonymiser",
        "witness",
        "schakel",
        "jose",
    },
    "hub": {"clients", "desk", "schakel", "pseudonymiser", "witness"},
    "clients": {"hub", "desk", "schakel", "jose", "pseudonymiser", "witness"},
    "desk": {"hub", "schakel", "jose", "sqlalchemy", "asyncpg", "pseudonymiser", "witness"},
    # A pseudonymisation service and a witness are run by other parties than the hub's
    # operator: they share protocol and keys with the others, and nothing else.
    "pseudonymiser": {"hub", "clients", "desk", "witness", "schakel", "jose"},
    "witness": {"hub", "clients", "desk", "pseudonymiser", "schakel", "jose"},
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


# Packages whose modules import each other in one direction only (one line a package).
NO_CYCLES = (
    "clients",
    "hub",
)  # fmt: skip


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _internal_imports(path: Path, package: str, modules: set[str]) -> set[str]:
    """The modules of ``package`` that ``path`` imports (absolute or relative, anywhere in
    the file, under TYPE_CHECKING too: a circle for the type checker is a circle)."""
    name = _module_name(path)
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target.split(".")[0] == package and target != name:
                found.add(target)
    # importing a package runs its __init__ only: a child never needs its parent edge
    return {t for t in found if not name.startswith(t + ".")}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of two or more modules (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(sorted(members))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def import_graph(package: str) -> dict[str, set[str]]:
    sources = _sources(package)
    modules = {_module_name(path) for path in sources}
    return {_module_name(p): _internal_imports(p, package, modules) for p in sources}


@pytest.mark.parametrize("package", NO_CYCLES)
def test_no_circles_inside_the_package(package: str) -> None:
    assert _cycles(import_graph(package)) == []


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
        for package in (
            "protocol",
            "keys",
            "hub",
            "clients",
            "desk",
            "pseudonymiser",
            "witness",
            "schakel",
        )
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


def test_only_the_desk_adapter_calls_the_client_library() -> None:
    users = [str(p.relative_to(ROOT)) for p in _sources("desk") if "clients" in _imports(p)]
    assert users == ["desk/adapter.py"]


def _route_modules() -> dict[str, set[str]]:
    """Each route module of ``hub/http`` (all but ``common``) with the hub modules it imports."""
    graph = import_graph("hub")
    return {
        name: imports
        for name, imports in graph.items()
        if name.startswith("hub.http.") and name != "hub.http.common"
    }


def test_hub_route_modules_share_common_and_never_import_each_other() -> None:
    routes = _route_modules()
    assert len(routes) >= 8  # auth, operations, directory, relay, ws, accesslog, cases, ...
    assert {name for name, imports in routes.items() if "hub.http.common" not in imports} == set()
    assert {name: sorted(imports & set(routes)) for name, imports in routes.items()} == {
        name: [] for name in routes
    }
    outside = {
        name: sorted(i for i in imports if i.startswith("hub.http"))
        for name, imports in import_graph("hub").items()
        if not name.startswith("hub.http") and name not in ("hub.app", "hub.metrics")
    }
    assert {name: found for name, found in outside.items() if found} == {}


def test_the_hub_reads_through_typed_store_methods_not_run_read() -> None:
    """``Store.run_read`` (a raw connection) is for tests, benchmarks and tools."""
    callers = [
        str(path.relative_to(ROOT))
        for path in _sources("hub")
        if "run_read(" in path.read_text(encoding="utf-8")
        and path.relative_to(ROOT).as_posix() != "hub/store/database.py"
    ]
    assert callers == []


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio\nfrom hub.store import Store\nfrom . import sibling\n")
    assert _imports(bad) == {"asyncio", "hub"}


def test_the_circle_check_sees_a_circle_and_relative_imports(tmp_path: Path) -> None:
    graph = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}}
    assert _cycles(graph) == [["p.a", "p.b", "p.c"]]
    assert _cycles({"p.a": {"p.b"}, "p.b": set()}) == []
    package = ROOT / "clients"
    modules = {_module_name(path) for path in _sources("clients")}
    cli = package / "cli" / "org.py"
    assert {"clients.cli.cases", "clients.cli.common"} <= _internal_imports(cli, "clients", modules)


def test_test_modules_have_names_of_their_own() -> None:
    """Test folders are not packages: pytest imports each test module by its file name, so
    two ``test_x.py`` in two folders collide, and ``from conftest import`` takes whichever
    folder's conftest was imported first (helpers live in a module with a name of its own)."""
    tests = ROOT / "tests"
    names = [path.name for path in tests.rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
    importing = sorted(
        str(path.relative_to(ROOT))
        for path in tests.rglob("*.py")
        if any(
            isinstance(node, ast.ImportFrom) and node.module == "conftest" and node.col_offset == 0
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        )
    )
    assert importing == []


# Wire conventions that hub and clients both read or write: each is spelt out only in
# protocol (a second copy elsewhere could drift from it).
WIRE_LITERALS = {
    '"urn:schakel:problem:"': "protocol/problem.py",
    '"schakel/auth/v1"': "protocol/challenge.py",
    '("shelter", "care", "legal_aid")': "protocol/cases.py",
    '"new", "referred", "in_care"': "protocol/cases.py",
    '"last", "first", "signals", "open"': "protocol/cases.py",
}


@pytest.mark.parametrize("literal", sorted(WIRE_LITERALS))
def test_a_wire_convention_is_written_once_in_protocol(literal: str) -> None:
    found = [
        str(path.relative_to(ROOT))
        for package in FORBIDDEN
        for path in _sources(package)
        if literal in path.read_text(encoding="utf-8")
    ]
    assert found == [WIRE_LITERALS[literal]]
