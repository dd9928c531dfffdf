"""The package's declared layer order (autoseg/__init__.py), checked on the source: every import of an autoseg
module, at the top of a file or inside a function, goes to the same layer or one below, and no modules import each
other in a circle. A new import that runs back up fails here, wherever it is written."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "autoseg"

# lowest first; the package's public faces (api, cli, __init__) on top. Reasons: autoseg/__init__.py.
LAYERS = ["core", "io", "datasets", "networks", "planner", "preprocessing", "evaluation", "postprocessing",
          "sharing", "inference", "training", "cluster", "api", "cli", "__init__"]


def module_name(path: Path, root: Path = PKG) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(source: str, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The autoseg modules ``module`` imports anywhere in ``source`` (functions, classes and ``if`` blocks
    included), relative imports resolved; ``from X import name`` counts X.name where that is a module."""
    pkg = module.split(".") if is_package else module.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            base = pkg[:len(pkg) - node.level + 1] if node.level else []
            mod = ".".join(base + (node.module.split(".") if node.module else []))
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != module:
                out.add(t)
    return out


def layer(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def graph(root: Path = PKG) -> dict[str, set[str]]:
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    known = set(files)
    return {m: imports(p.read_text(), m, p.name == "__init__.py", known) for m, p in files.items()}


def upward(g: dict[str, set[str]]) -> list[str]:
    """Imports that go to a higher layer than the importer's (or to a package outside the declared order)."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    return sorted(f"{a} -> {b}" for a, bs in g.items() for b in bs
                  if layer(a) not in rank or layer(b) not in rank or rank[layer(b)] > rank[layer(a)])


def circles(g: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that import each other, directly or round a loop (strongly connected components)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_runs_back_up():
    assert upward(graph()) == []


def test_no_circles():
    assert circles(graph()) == []


def test_the_root_holds_only_the_public_faces():
    assert sorted(p.name for p in PKG.glob("*.py")) == ["__init__.py", "api.py", "cli.py"]
    assert sorted(p.name for p in PKG.iterdir() if p.is_dir() and p.name != "__pycache__") == \
        sorted(x for x in LAYERS if x not in ("api", "cli", "__init__"))


def test_the_checker_sees_every_kind_of_import():
    """What the checks above rely on, on the real source: relative imports at any depth, ``from . import x``,
    and imports inside functions (the CLI imports api lazily, to start without torch)."""
    g = graph()
    assert "autoseg.api" in g["autoseg.cli"]
    assert "autoseg.networks.unet" in g["autoseg.planner.heuristics"]  # relative, ``from ..networks.unet``
    assert "autoseg.core.faults" in g["autoseg.training.fit.loop"]  # three levels: ``from ...core.faults``
    assert "autoseg.inference.predictor" in g["autoseg.training.validation"]  # inside a function


@pytest.mark.parametrize("where, line", [
    ("top", "from ..training import loop\n"),
    ("function", "def f():\n    from ..inference.predictor import Predictor\n"),
    ("absolute", "import autoseg.cli\n"),
])
def test_an_upward_import_added_anywhere_fails(tmp_path, where, line):
    """A copy of the package with one upward import added to the planner is refused (and the copy as it was is
    accepted): the check cannot pass by seeing nothing."""
    import shutil

    copy = tmp_path / "autoseg"
    shutil.copytree(PKG, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert upward(graph(copy)) == []
    target = copy / "planner" / "heuristics.py"
    target.write_text(target.read_text() + "\n" + line)
    assert upward(graph(copy))


def test_a_circle_is_found():
    a, b, c, d = (f"autoseg.core.{x}" for x in "abcd")
    assert circles({a: {b}, b: {c}, c: {a}, d: {a}}) == [[a, b, c]]
    assert circles({a: {b}, b: {c}, d: {a}}) == []


def test_no_public_name_twice_across_packages():
    """A public class or function, or a module, has one name in the whole package: two ``Predictor``s, two
    ``ensemble.py`` and two ``Schedule``s once made the reader guess which one a line meant. Modules of one package
    may share names on purpose (each converter's ``build``, each scheduler's ``submit``/``refresh``)."""
    where: dict[str, set[str]] = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG).with_suffix("").parts
        package = ".".join(parts[:-1]) or "(root)"
        if p.name != "__init__.py":
            where.setdefault(f"module {parts[-1]}", set()).add(package)
        for node in ast.parse(p.read_text()).body:
            public = not getattr(node, "name", "_").startswith("_")
            if public and isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                where.setdefault(node.name, set()).add(package)
    assert {name: sorted(pk) for name, pk in where.items() if len(pk) > 1} == {}


def test_the_public_predictor_is_the_inference_one():
    import autoseg
    from autoseg.inference.predictor import Predictor

    assert autoseg.Predictor is Predictor
