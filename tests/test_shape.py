"""The shape of kobert, checked from its source: a hub with spokes, and functions that read top to bottom.

- no import circle among kobert modules (an import anywhere in a module, at top level or inside a
  function, is an edge: a lazy import is still a dependency);
- the hub and the judge import no spoke;
- framework imports only in the spokes;
- no function over 60 lines.

Read with `ast`, so nothing here imports a framework (or kobert).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "kobert"
FRAMEWORKS = {"tensorflow", "tensorflow_text", "torch", "onnxruntime", "onnx", "tf2onnx", "mxnet",
              "tflite_runtime", "ai_edge_litert", "absl", "keras", "pyspark", "py4j"}
# Where framework imports belong: one exporter and one runtime per framework, and training (torch's
# own loop); the Spark engine is a runtime spoke too (kobert.runtimes.spark). A module outside these that needs a
# framework is a spoke in the wrong place.
SPOKES = ("kobert.exporters.", "kobert.runtimes.", "kobert.training.")
# The exceptions, each with its reason, as (module, framework).
ALLOWED: set[tuple[str, str]] = set()
# The hub (config, canonical weights, checkpoints) and the judge (parity) know no spoke.
HUB_AND_JUDGE = {"kobert.config", "kobert.canonical", "kobert.checkpoint", "kobert.parity", "kobert.registry"}
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_names(path: Path) -> list[str]:
    """Every module name an import statement in the file names (absolute, relative resolved)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                own = module_name(path)
                package = own if path.name == "__init__.py" else own.rpartition(".")[0]
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from kobert import registry` names the module kobert.registry, not the package
            names += [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    return names


def kobert_imports(path: Path) -> set[str]:
    return {name for name in imported_names(path) if name in MODULES} - {module_name(path)}


def framework_imports(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imported_names(path)} & FRAMEWORKS


def import_graph(modules: dict[str, Path] = MODULES) -> dict[str, set[str]]:
    return {name: kobert_imports(path) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def is_spoke(module: str) -> bool:
    return module.startswith(SPOKES)


def long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [f"{path}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]


def test_no_import_circle():
    assert cycles(import_graph()) == []


def test_the_hub_and_the_judge_import_no_spoke():
    wrong = {m: sorted(i for i in import_graph()[m] if is_spoke(i)) for m in HUB_AND_JUDGE}
    assert {m: i for m, i in wrong.items() if i} == {}


def test_frameworks_are_imported_only_in_spokes():
    wrong = {name: sorted(fw for fw in framework_imports(path) if (name, fw) not in ALLOWED)
             for name, path in MODULES.items() if not is_spoke(name)}
    assert {name: fws for name, fws in wrong.items() if fws} == {}


def test_no_function_over_60_lines():
    assert [line for path in MODULES.values() for line in long_functions(path)] == []


# --- the checks themselves fail on what they guard against -------------------------------------------


def test_a_circle_is_found():
    graph = {"kobert.checkpoint": {"kobert.runtimes.torch"}, "kobert.runtimes.torch": {"kobert.runtimes.base"},
             "kobert.runtimes.base": {"kobert.checkpoint", "kobert.config"}, "kobert.config": set()}
    assert cycles(graph) == [["kobert.checkpoint", "kobert.runtimes.base", "kobert.runtimes.torch"]]


@pytest.mark.parametrize("source, expected", [
    ("import tensorflow as tf\n", {"tensorflow"}),
    ("def f():\n    import absl.logging\n", {"absl"}),  # a lazy import counts too
    ("from torch import nn\n", {"torch"}),
    ("import numpy\nfrom pathlib import Path\n", set()),
])
def test_a_framework_import_is_found(tmp_path, source, expected):
    path = tmp_path / "kobert" / "progress.py"
    path.parent.mkdir()
    path.write_text(source)
    assert framework_imports(path) == expected


def test_a_long_function_is_found(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    path = tmp_path / "probe.py"
    path.write_text("def long():\n" + body + "\n\ndef short():\n    return 1\n")
    assert long_functions(path) == [f"{path}:1 long ({MAX_FUNCTION_LINES + 1} lines)"]
