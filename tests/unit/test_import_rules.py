"""The architecture's arrows, checked: imports only point down.

    core  <-  config/codec  <-  registry  <-  activities  <-  workflows
                                                <-  publisher   <-  ops  <-  cli, server, dev

A module may import the project modules its layer lists below, and nothing else of the
project (the standard library and third-party packages are not checked). `dev` is for
laptops and tests only: the worker and the publisher must never reach it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FOUNDATION = ("webhooks.config", "webhooks.codec", "webhooks.logs", "webhooks.tracing")
"""Settings and plumbing that workers and publishers share; they sit just above core."""

REGISTRY = "webhooks.registry"
"""The endpoint registry: database I/O at foundation level, below everything that uses it."""

LAYERS: dict[str, tuple[str, ...]] = {
    "webhooks.core": ("webhooks.core",),
    **dict.fromkeys(FOUNDATION, ("webhooks.core", *FOUNDATION)),
    "webhooks.logs": ("webhooks.core", "webhooks.config"),
    "webhooks.tracing": ("webhooks.core", "webhooks.config"),
    REGISTRY: ("webhooks.core", *FOUNDATION, REGISTRY),
    "activities": ("webhooks.core", *FOUNDATION, REGISTRY, "activities"),
    "workflows": ("webhooks.core", "activities", "workflows"),
    "webhooks.publisher": ("webhooks.core", *FOUNDATION, REGISTRY),
    "webhooks": ("webhooks.core", *FOUNDATION, "webhooks.publisher"),
    # The worker publishes operational events through the publisher, like any service.
    "worker": (
        "webhooks.core",
        *FOUNDATION,
        REGISTRY,
        "activities",
        "workflows",
        "webhooks.publisher",
    ),
    "webhooks.ops": ("webhooks.core", *FOUNDATION, REGISTRY, "webhooks.publisher", "webhooks.ops"),
}
"""Layer (a module or package prefix) -> what it may import. Longest prefix wins."""

TOP = ("webhooks.cli", "webhooks.server", "webhooks.dev")
"""May import anything of the project."""

PROJECT = ("webhooks", "workflows", "activities", "worker")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_imports(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from webhooks.core import search_attributes` imports webhooks.core.x
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if _within(name, PROJECT)]


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def layer_of(module: str) -> str | None:
    if _within(module, TOP):
        return None
    matches = [layer for layer in LAYERS if _within(module, (layer,))]
    assert matches, f"{module} belongs to no layer: add it to LAYERS or TOP"
    return max(matches, key=len)


def violations(module: str, source: str) -> list[str]:
    layer = layer_of(module)
    if layer is None:
        return []
    allowed = LAYERS[layer]
    return [
        f"{module}:{line} imports {name} (layer {layer!r} may import only {', '.join(allowed)})"
        for line, name in project_imports(ast.parse(source))
        if not _within(name, allowed)
    ]


def product_modules() -> list[Path]:
    paths = [ROOT / "worker.py"]
    for package in ("webhooks", "workflows", "activities"):
        paths += sorted((ROOT / package).rglob("*.py"))
    return paths


def test_every_import_points_down() -> None:
    found = [v for p in product_modules() for v in violations(module_name(p), p.read_text())]
    assert found == []


def test_every_module_has_a_layer() -> None:
    modules = [module_name(path) for path in product_modules()]
    assert {"workflows.delivery", "webhooks.core.circuit", "worker"} <= set(modules)
    for module in modules:
        layer_of(module)  # fails for a module in no layer


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("webhooks.core.models", "from webhooks.config import Settings"),
        ("webhooks.core.policy", "import activities.send"),
        ("workflows.delivery", "from webhooks.publisher import connect"),
        ("workflows.delivery", "from webhooks import config"),
        ("activities.send", "from workflows.delivery import WebhookDelivery"),
        ("webhooks.publisher", "from webhooks.dev.receiver import Receiver"),
        ("worker", "from webhooks.cli import app"),
        ("webhooks.ops.dead_letters", "from webhooks.server import app"),
        ("webhooks.core.bulk", "from webhooks.ops.bulk import start_bulk"),
        ("activities.bulk", "from webhooks.ops.dead_letters import act_on"),
        ("webhooks.config", "from webhooks.publisher import connect"),
        ("webhooks.logs", "from webhooks.codec import PayloadCodec"),
        ("webhooks.registry.store", "from activities.send import SendActivities"),
        ("webhooks.registry.service", "from webhooks.publisher import connect"),
        ("workflows.delivery", "from webhooks.registry.service import EndpointRegistry"),
        ("webhooks.config", "from webhooks.registry.models import Endpoint"),
    ],
)
def test_a_forbidden_import_is_caught(module: str, source: str) -> None:
    assert len(violations(module, source)) == 1


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("workflows.delivery", "from webhooks.core.models import Attempt"),
        ("workflows.delivery", "from activities.send import SendActivities"),
        ("webhooks.cli.app", "from worker import run_worker"),
        ("webhooks.dev.demo", "from webhooks.cli.output import out"),
        ("webhooks.core.policy", "import httpx"),
        ("worker", "from webhooks.logs import configure_logging"),
        ("activities.send", "from webhooks.registry.service import EndpointRegistry"),
        ("webhooks.registry.crypto", "from webhooks.codec import parse_keys"),
        ("webhooks.publisher", "from webhooks.registry.service import open_registry"),
    ],
)
def test_an_allowed_import_passes(module: str, source: str) -> None:
    assert violations(module, source) == []
