"""The house's shape, checked from the source: no import circles, small modules, a core that names no
engine library, and a runtime that never loads the devkit (the zoo, torch)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The installed name of each source folder (backends/ installs as deploy_sdk_backends).
PACKAGES = {"sdk": "sdk", "backends": "deploy_sdk_backends"}
MAX_LINES = 350
ENGINE_LIBRARIES = {"onnxruntime", "tensorrt", "openvino", "pycuda"}
# What naming an engine in a string looks like: its library, or one of its own option keys (ONNX
# Runtime's session config keys such as "session.intra_op.allow_spinning", its execution providers).
ENGINE_WORDS = re.compile(
    r"\b(onnxruntime|openvino|tensorrt|pycuda)\b|ExecutionProvider|^(session|ep)\.[a-z_]+\.", re.I
)
DEVKIT = ("sdk/zoo", "sdk/bench")  # may import torch and the zoo; nothing else may


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the SDK and its built-in backends."""
    found = {}
    for folder, installed in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([installed, *parts])] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, path: Path) -> set[str]:
    """Every module name ``path`` imports, at any depth (lazy imports inside functions too), except
    under ``if TYPE_CHECKING:`` (annotations only, never run)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports."""
    modules = _modules()
    return {name: {m for m in _imports(name, path) if m in modules and m != name} for name, path in modules.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return circles


def _is_package(name: str) -> bool:
    return _modules()[name].name == "__init__.py"


def test_no_import_circles(graph):
    # A package's __init__ that re-exports its submodules, and a submodule that imports a sibling
    # through the package, are one unit: that is how Python packages are built, not a circle
    # between two jobs. Any other circle fails.
    circles = [
        c
        for c in _circles(graph)
        if not any(_is_package(m) and all(o.startswith(m + ".") for o in c if o != m) for m in c)
    ]
    assert not circles, f"import circles (module sets that import each other): {circles}"


def test_the_circle_finder_finds_circles():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_the_import_reader_sees_lazy_relative_imports():
    imports = _imports("sdk.cli", ROOT / "sdk" / "cli.py")
    assert "sdk.predictor" in imports and "sdk.jobs" in imports  # both imported inside handlers


def test_no_module_in_sdk_is_over_350_lines():
    long = {
        str(path.relative_to(ROOT)): lines
        for path in (ROOT / "sdk").rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}; split them by job"


def test_the_core_imports_no_engine_library():
    """The core (sdk/ but the devkit's benchmark and zoo) reaches engines through backends only."""
    found = {}
    for name, path in _modules().items():
        relative = str(path.relative_to(ROOT))
        if not relative.startswith("sdk/") or relative.startswith(DEVKIT):
            continue
        engines = {m.split(".")[0] for m in _imports(name, path)} & ENGINE_LIBRARIES
        if engines:
            found[relative] = sorted(engines)
    assert not found, f"core modules importing an engine library: {found}"


def _engine_strings(source: str) -> list[str]:
    """The string constants of ``source`` (docstrings aside: prose may name what a backend wraps) that
    name an engine library or one of an engine's own option keys."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and ENGINE_WORDS.search(node.value)
    ]


def test_the_engine_string_finder_finds_engine_keys():
    server_before = (
        'def options():\n    """Asks onnxruntime not to spin."""\n    return {"session.intra_op.allow_spinning": "0"}\n'
    )
    assert _engine_strings(server_before) == ["session.intra_op.allow_spinning"]
    found = _engine_strings('providers = ["CUDAExecutionProvider"]; name = "openvino"')
    assert sorted(found) == ["CUDAExecutionProvider", "openvino"]
    assert _engine_strings('help = "a backend such as ort-cpu"; key = "session.id"') == []


def test_the_core_and_the_server_name_no_engine_in_their_code():
    """An engine's own settings belong to its backend (Backend.server_options and the plugin contract):
    the core and the server pass options through without naming one."""
    found = {}
    for path in sorted((ROOT / "sdk").rglob("*.py")):
        relative = str(path.relative_to(ROOT))
        if not relative.startswith(DEVKIT):
            strings = _engine_strings(path.read_text(encoding="utf-8"))
            if strings:
                found[relative] = strings
    assert not found, f"core modules naming an engine or its option keys: {found}"


def test_only_the_devkit_imports_torch_or_the_zoo():
    found = {}
    for name, path in _modules().items():
        relative = str(path.relative_to(ROOT))
        if relative.startswith(DEVKIT):
            continue
        devkit = {m for m in _imports(name, path) if m.split(".")[0] == "torch" or m.startswith("sdk.zoo")}
        if devkit:
            found[relative] = sorted(devkit)
    assert not found, f"runtime modules importing torch or sdk.zoo: {found}"
    # The benchmark reaches torch only lazily, for its PyTorch rows: `sdk bench` without torch works.
    for path in (ROOT / "sdk" / "bench").rglob("*.py"):
        top = ast.parse(path.read_text(encoding="utf-8")).body
        modules = {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
        modules |= {n.module or "" for n in top if isinstance(n, ast.ImportFrom)}
        assert not any(m.split(".")[0] == "torch" or "zoo" in m for m in modules), path


def test_running_a_predictor_loads_no_torch_and_no_zoo(tmp_path):
    code = """
import sys
import numpy as np
import sdk

with sdk.Predictor("srcnn3", backend="ort-cpu") as p:
    plan = p.plan((40, 40), 2, tile=16)
    p.run_plan(np.zeros((1, 40, 40, 3), np.uint8), 2, plan)
    p(np.zeros((8, 8, 3), np.uint8), scale=3)
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "torch" or m.startswith("sdk.zoo"))
assert not loaded, loaded
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
