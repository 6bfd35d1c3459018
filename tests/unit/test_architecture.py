"""The layering rules of DESIGN.md, checked on the source so they cannot rot."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests import ROOT

HARDWARE = {"picamera2", "pyzbar", "serial", "luma", "gpiozero", "lgpio", "RPi", "smbus2",
            "spidev"}
PURE_CORE = ["counter.controller", "counter.screens", "store.outbox", "counter.members",
             "mqtt.protocol", "counter.events", "counter.checkin", "store.cache", "config"]


def _imports(path: Path) -> set[str]:
    """Top-level package names a module imports (absolute imports only)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "drivers").glob("*.py")), ids=lambda p: p.name)
def test_drivers_never_import_the_application(path):
    assert "kiosk" not in _imports(path)


@pytest.mark.parametrize("path", sorted((ROOT / "kiosk").rglob("*.py")), ids=lambda p: p.name)
def test_the_application_imports_no_hardware_library(path):
    assert not _imports(path) & HARDWARE


@pytest.mark.parametrize("name", PURE_CORE)
def test_the_core_imports_no_mqtt_client(name):
    assert "paho" not in _imports(ROOT / "kiosk" / f"{name.replace('.', '/')}.py")


def test_importing_the_core_loads_no_hardware_library_or_mqtt_client():
    modules = ", ".join(f"kiosk.{name}" for name in PURE_CORE)
    probe = (f"import sys, {modules}, drivers.factory; "
             "print(sorted({m.split('.')[0] for m in sys.modules}))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True, timeout=60).stdout
    assert not set(ast.literal_eval(loaded)) & (HARDWARE | {"paho"})


# --- the rooms and their order (DESIGN.md §2) ------------------------------------------

LAYERS = ["trust", "counter", "ui", "store", "mqtt", "config", "provisioning", "ops", "daemon",
          "staff", "sim", "testing"]
"""kiosk's subpackages (and the config module), low to high: each imports only lower ones.

The config module sits above the rooms whose settings types it assembles (``ui.settings``,
``mqtt.settings``), so the MQTT package and the backend never need the kiosk's config.

The root package (``kiosk/__init__.py``: the exception root, the version) is below them
all and imports none; ``kiosk.cli``, the entry point, is above them all and none imports it.
"""
TOPIC_FRAGMENTS = ("evt/checkin", "config/desired", "config/reported", "tele/health", "cmd/",
                   "/reply", "/status", "/state", "/enroll")
"""Pieces of the kiosk's topics that no other text has: found outside the protocol module,
they are a topic spelled by hand."""
PRODUCTION = sorted([*(path for path in (ROOT / "kiosk").rglob("*.py")
                       if "testing" not in path.relative_to(ROOT / "kiosk").parts),
                     *(ROOT / "backend").rglob("*.py")])


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it, relative imports resolved; for
    ``from package import name`` both the package and ``package.name``."""
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level \
                else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return found


def _room(module: str) -> str | None:
    """The part of kiosk a module belongs to: a subpackage, ``config``, ``cli`` or ``root``;
    None outside kiosk."""
    parts = module.split(".")
    if parts[0] != "kiosk":
        return None
    if len(parts) > 1 and parts[1] == "__main__":
        return "cli"  # ``python -m kiosk``: the same entry point
    if len(parts) == 1 or parts[1] not in {*LAYERS, "cli"}:
        return "root"  # kiosk itself, or a name it defines (``from kiosk import KioskError``)
    return parts[1]


def _graph() -> dict[tuple[str, str], set[str]]:
    """Edges between kiosk's rooms, each with the modules that make it."""
    edges: dict[tuple[str, str], set[str]] = {}
    for path in sorted((ROOT / "kiosk").rglob("*.py")):
        source = _room(_module(path))
        for module in _imported_modules(path):
            target = _room(module)
            if target is not None and target != source:
                edges.setdefault((source, target), set()).add(_module(path))  # type: ignore[arg-type]
    return edges


def _shown(edges: dict[tuple[str, str], set[str]]) -> str:
    return "; ".join(f"{a} -> {b} ({', '.join(sorted(by))})"
                     for (a, b), by in sorted(edges.items()))


def test_production_code_never_imports_kiosk_testing():
    offenders = sorted(_module(path) for path in PRODUCTION
                       if any(m == "kiosk.testing" or m.startswith("kiosk.testing.")
                              for m in _imported_modules(path)))
    assert not offenders, f"import kiosk.testing: {offenders}"


def _topic_strings(path: Path) -> list[str]:
    """String constants (not documentation) holding a piece of a topic."""
    tree = ast.parse(path.read_text())
    docs = {id(node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    return [f"{_module(path)}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docs and any(piece in node.value for piece in TOPIC_FRAGMENTS)]


def test_topic_strings_are_spelled_only_in_the_protocol_module():
    protocol_module = ROOT / "kiosk" / "mqtt" / "protocol.py"
    found = [text for path in PRODUCTION if path != protocol_module
             for text in _topic_strings(path)]
    assert not found, "\n".join(found)


def test_the_backend_shares_only_the_protocol_side_of_kiosk():
    offenders = sorted({f"{_module(path)} -> kiosk.{_room(module)}"
                        for path in (ROOT / "backend").rglob("*.py")
                        for module in _imported_modules(path)
                        if _room(module) not in (None, "root", "mqtt")})
    assert not offenders, offenders


def test_trust_imports_nothing_of_kiosk_but_the_root():
    edges = {edge: by for edge, by in _graph().items() if edge[0] == "trust" and edge[1] != "root"}
    assert not edges, _shown(edges)


def test_the_rooms_import_each_other_without_a_cycle():
    edges = _graph()
    reach = {room: {b for (a, b) in edges if a == room} for room in {a for a, _ in edges}}
    for _ in reach:  # transitive closure: a handful of rooms
        for targets in reach.values():
            targets |= {far for near in list(targets) for far in reach.get(near, ())}
    cycles = {edge: by for edge, by in edges.items() if edge[0] in reach.get(edge[1], ())}
    assert not cycles, _shown(cycles)


def test_no_room_imports_one_above_it():
    def upward(source: str, target: str) -> bool:
        if target == "cli" or source == "root":
            return True
        return (source in LAYERS and target in LAYERS
                and LAYERS.index(target) > LAYERS.index(source))

    edges = {edge: by for edge, by in _graph().items() if upward(*edge)}
    assert not edges, _shown(edges)
