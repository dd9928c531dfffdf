"""One fold's training reads top-down: from ``autoseg.training.fold.train_fold`` (what `autoseg train` runs for a
fold) to the loop's ``fit`` the calls go at most four deep (train_fold -> a -> b -> c -> fit), so a reader follows
the path by name instead of through a stack of wrappers. Measured on the source with ``ast``: a call counts when
its name resolves, in its module, to a module-level function of autoseg/training (defined there, imported from a
sibling module, or called as ``module.function`` on a sibling module imported with ``from . import``); calls in a
nested function count for the function around it; methods and functions passed as values are not followed."""
import ast
from pathlib import Path

TRAINING = Path(__file__).resolve().parents[1] / "autoseg" / "training"
ENTRY, TARGET = ("fold", "train_fold"), ("fit.loop", "fit")
MAX_DEPTH = 4

Node = tuple[str, str]  # (module, function)


def _resolvers(tree: ast.Module, mod: str, modules_here: set[str]) -> tuple[dict[str, Node], dict[str, str]]:
    """In module ``mod`` (dotted, relative to the package): the names that stand for the package's functions, and
    those that stand for its modules. Relative imports at any depth inside the package are followed."""
    funcs = {n.name: (mod, n.name) for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    modules = {}
    pkg = mod.split(".")[:-1]
    for node in ast.walk(tree):  # imports inside functions count too
        if not isinstance(node, ast.ImportFrom) or not node.level or node.level > len(pkg) + 1:
            continue
        base = ".".join(pkg[:len(pkg) - node.level + 1] + (node.module.split(".") if node.module else []))
        for a in node.names:
            inner = f"{base}.{a.name}" if base else a.name
            if base in modules_here:
                funcs[a.asname or a.name] = (base, a.name)
            elif inner in modules_here:
                modules[a.asname or a.name] = inner
    return funcs, modules


def call_graph(folder: Path) -> dict[Node, set[Node]]:
    """Each module-level function of the package's modules (subpackages included) -> the package's functions it
    calls."""
    trees = {".".join(p.relative_to(folder).with_suffix("").parts): ast.parse(p.read_text())
             for p in sorted(folder.rglob("*.py")) if p.name != "__init__.py"}
    graph: dict[Node, set[Node]] = {}
    for mod, tree in trees.items():
        funcs, modules = _resolvers(tree, mod, set(trees))
        for node in tree.body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            callees = set()
            for sub in ast.walk(node):
                f = sub.func if isinstance(sub, ast.Call) else None
                if isinstance(f, ast.Name) and f.id in funcs:
                    callees.add(funcs[f.id])
                elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in modules:
                    callees.add((modules[f.value.id], f.attr))
            graph[(mod, node.name)] = callees
    return graph


def longest_path(graph: dict[Node, set[Node]], start: Node, end: Node) -> list[Node]:
    """The longest call path (no function twice) from ``start`` to ``end``; [] when there is none."""
    reaches = {end}  # the functions from which ``end`` can be reached: the only ones worth walking through
    changed = True
    while changed:
        changed = False
        for f, callees in graph.items():
            if f not in reaches and callees & reaches:
                reaches.add(f)
                changed = True
    best: list[Node] = []

    def walk(path: list[Node]) -> None:
        nonlocal best
        if path[-1] == end:
            best = max(best, path, key=len)
            return
        for c in sorted(graph.get(path[-1], ())):
            if c in reaches and c not in path:
                walk(path + [c])

    if start in reaches:
        walk([start])
    return best


def _names(path: list[Node]) -> str:
    return " -> ".join(f"{m}.{f}" for m, f in path)


def test_train_fold_reaches_fit_within_four_calls():
    path = longest_path(call_graph(TRAINING), ENTRY, TARGET)
    assert path, f"no call path from {_names([ENTRY])} to {_names([TARGET])}: the measure lost the chain"
    assert len(path) - 1 <= MAX_DEPTH, (f"one fold's path to fit is {len(path) - 1} calls deep: {_names(path)}; "
                                        f"merge a layer so it is at most {MAX_DEPTH}")


def test_the_measure_sees_a_wrapper_added_in_another_module(tmp_path):
    """The check above could pass by seeing nothing: a chain through imported names, a function-level import and a
    ``module.function`` call is followed, and one more wrapper makes it one deeper."""
    (tmp_path / "fit").mkdir()
    (tmp_path / "fit" / "loop.py").write_text("def fit():\n    pass\n")
    (tmp_path / "steps.py").write_text("from .fit.loop import fit as run\n\n\ndef c():\n    run()\n")
    (tmp_path / "fold.py").write_text(
        "from . import steps\n\n\ndef train_fold():\n    a()\n\n\ndef a():\n    def inner():\n        b()\n"
        "    inner()\n\n\ndef b():\n    steps.c()\n")
    assert _names(longest_path(call_graph(tmp_path), ENTRY, TARGET)) == \
        "fold.train_fold -> fold.a -> fold.b -> steps.c -> fit.loop.fit"
    (tmp_path / "steps.py").write_text(
        "def c():\n    from .fit import loop\n\n    wrap(loop.fit)\n    d()\n\n\n"
        "def d():\n    from .fit.loop import fit\n\n    fit()\n\n\ndef wrap(f):\n    return f\n")
    path = longest_path(call_graph(tmp_path), ENTRY, TARGET)
    assert len(path) - 1 == 5 and path[-2] == ("steps", "d")
