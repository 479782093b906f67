"""The layout's promises (README, Design), checked on the code itself: imports go down, never in a circle,
and the server process loads neither OpenVINO nor the children's code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

PACKAGES = ("gateway", "adapters", "bench")


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module of ours that ``name`` imports, at module level or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_imports_go_down():
    """Nothing in adapters imports the gateway; nothing but the benchmark imports the benchmark."""
    upward = [
        (module, target)
        for module, targets in _graph().items()
        for target in targets
        if (module.startswith("adapters") and target.startswith("gateway"))
        or (not module.startswith("bench") and target.startswith("bench"))
    ]
    assert not upward, upward


def test_there_is_no_import_circle():
    """No module reaches itself through imports (lazy ones count: a circle is a circle when it runs)."""
    graph = _graph()
    circles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                circles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, circles


def test_the_server_process_loads_no_openvino_and_no_child_code():
    """The server side names the children's entry points as strings: importing all of it loads neither
    OpenVINO nor adapters.openvino.worker, nor the export or benchmark code."""
    probe = (
        "import sys, gateway.app, gateway.cli, gateway.registry, adapters.openvino.adapter, "
        "adapters.openvino.encoder, adapters.openvino.process, adapters.openvino.supervisor; "
        "heavy = ('openvino', 'openvino_genai', 'openvino_tokenizers', 'torch', 'optimum', 'bench'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy "
        "or m.startswith(('adapters.openvino.worker', 'adapters.export.'))))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
