"""The layers of docs/ARCHITECTURE.md, checked on every module's imports (ast, no import):
a module imports only from its own layer or those below it, and only storage reads HDF5."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from xdream.testing.servers import ROOT

#: Layer of each package (longest prefix wins), lowest first.
RANK = {
    "protocol": 0,
    "rig_clients": 1,
    "server.engine": 1,
    "server.storage": 2,
    "server.sessions": 3,
    "server.rig": 4,
    "server.http": 4,
    "server.settings": 5,
    "server.serve": 5,
    "server": 0,  # server/__init__.py: the version only, importable from anywhere
    "simulator": 4,
    "xdream": 6,
}
#: Pairs of the same rank that must not import each other either.
APART = {
    frozenset({"server.rig", "server.http"}),
    frozenset({"rig_clients", "server.engine"}),
    frozenset({"simulator", "server.rig"}),
    frozenset({"simulator", "server.http"}),
}

OURS = {"protocol", "rig_clients", "server", "simulator", "xdream"}


def _package(module: str) -> str:
    return max((p for p in RANK if module == p or module.startswith(p + ".")), key=len)


def _modules() -> list[tuple[str, Path]]:
    out = []
    for top in ("protocol", "rig_clients", "server", "simulator", "xdream"):
        for path in sorted((ROOT / top).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out.append((name.removesuffix(".__init__"), path))
    return out


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


MODULES = _modules()


@pytest.mark.parametrize(("name", "path"), MODULES, ids=[name for name, _ in MODULES])
def test_imports_point_down_or_sideways_within_a_layer(name, path):
    mine = _package(name)
    for imported in _imports(path):
        if imported.split(".")[0] not in {
            "protocol",
            "rig_clients",
            "server",
            "simulator",
            "xdream",
        }:
            continue
        theirs = _package(imported)
        assert RANK[theirs] <= RANK[mine], f"{name} imports {imported}, a layer above it"
        assert frozenset({mine, theirs}) not in APART, f"{name} imports {imported}"
        if mine.startswith("server"):
            assert not imported.startswith("simulator"), f"{name} imports {imported}"


def test_only_storage_and_the_folder_front_end_read_hdf5():
    """Benchmarks too read session files through server.storage, not h5py."""
    scripts = [(f"benchmarks.{p.stem}", p) for p in sorted((ROOT / "benchmarks").glob("*.py"))]
    readers = {name for name, path in [*MODULES, *scripts] if "h5py" in _imports(path)}
    assert readers and all(
        r.startswith("server.storage") or r == "rig_clients.folder" for r in readers
    ), readers


def test_the_rig_side_never_imports_torch_or_the_server():
    for name, path in MODULES:
        if name.startswith(("protocol", "rig_clients", "xdream.rig_commands", "xdream.common")):
            tops = {i.split(".")[0] for i in _imports(path)}
            assert not tops & {"torch", "server", "simulator", "fastapi"}, name
