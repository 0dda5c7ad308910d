"""The package's shape, as STYLE.md draws it: a pure core, third parties behind one adapter each,
imports that point one way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "radius_bridge"
MODULES = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem != "__main__")


def imports(module: str) -> set[str]:
    """Top-level names of everything ``module`` imports (``radius_bridge.x`` kept whole)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "radius_bridge":
                names = [f"radius_bridge.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            found.add(".".join(parts[:2]) if parts[0] == "radius_bridge" else parts[0])
    return found


# The only module allowed to import each third-party library that speaks a protocol.
ADAPTERS = {"pyrad": {"radius"}, "requests": {"fic"}, "urllib3": {"fic"}}

# Decisions and values: no I/O, no clocks of their own, no logging.
PURE = {"model", "errors", "policy", "challenge", "limits"}
IO_LIBRARIES = {
    "socket",
    "requests",
    "http",
    "asyncio",
    "subprocess",
    "urllib",
    "structlog",
    "logging",
    "selectors",
    "ssl",
}


@pytest.mark.parametrize("library", sorted(ADAPTERS))
def test_each_protocol_library_has_one_adapter(library: str) -> None:
    """pyrad only in the codec, requests only in the FIC client."""
    users = {module for module in MODULES if library in imports(module)}
    assert users <= ADAPTERS[library]


@pytest.mark.parametrize("module", sorted(PURE & set(MODULES)))
def test_pure_modules_do_no_io(module: str) -> None:
    """The pure core touches neither network, threads, event loop nor logs."""
    assert not imports(module) & IO_LIBRARIES


def test_imports_point_one_way() -> None:
    """No module imports the CLI or the daemon except the CLI itself, and there is no cycle."""
    graph = {
        module: {
            name.split(".")[1] for name in imports(module) if name.startswith("radius_bridge.")
        }
        - {module}
        for module in MODULES
    }
    for module, targets in graph.items():
        if module != "cli":
            assert "cli" not in targets, module
        # Commands that build a whole bridge, or check how one would be built, may use daemon.
        if module not in {"cli", "daemon", "doctor", "bench"}:
            assert "daemon" not in targets, module
    for module in ("model", "errors"):
        assert graph[module] <= {"model", "errors"}

    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        if module in done:
            return
        assert module not in visiting, f"import cycle: {' -> '.join([*visiting, module])}"
        visiting.append(module)
        for target in graph.get(module, ()):
            visit(target)
        visiting.pop()
        done.add(module)

    for module in graph:
        visit(module)
