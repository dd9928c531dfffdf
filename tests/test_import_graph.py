"""The planner imports neither training/ nor inference/ (the step timer is handed to it), and the networks know
nothing of plans, training or inference: checked on the source, so a new import that breaks the layering fails."""
import ast
import graphlib
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "autoseg"
FORBIDDEN = {"planner": {"training", "inference"}, "networks": {"planner", "training", "inference"},
             # issue 24's order: preprocessing < evaluation < postprocessing < sharing < inference < training
             "preprocessing": {"evaluation", "postprocessing", "sharing", "inference", "training"},
             "postprocessing": {"sharing", "inference", "training"}, "sharing": {"inference", "training"},
             "cluster": {"cli", "api"}}  # the CLI hands the job graph its parser


def _imported_subpackages(path: Path) -> set[str]:
    """autoseg subpackages imported by ``path`` (relative imports resolved against its package)."""
    pkg = path.relative_to(PKG.parent).with_suffix("").parts[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = list(pkg[:len(pkg) - node.level + 1]) if node.level else []
            mod = base + (node.module.split(".") if node.module else [])
            names = [mod + [a.name] for a in node.names] if not node.module else [mod]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".") for a in node.names]
        else:
            continue
        out |= {m[1] for m in names if len(m) > 1 and m[0] == "autoseg"}
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layering(package):
    bad = {str(p.relative_to(PKG)): sorted(_imported_subpackages(p) & FORBIDDEN[package])
           for p in sorted((PKG / package).glob("*.py"))}
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_checker_sees_imports():
    """The test above could pass by seeing nothing: the fold's set-up imports the planner, the parts the networks
    (relative imports), and the training loop only its own package and core (the fault hook, ``..core.faults``)."""
    assert "planner" in _imported_subpackages(PKG / "training" / "setup.py")
    assert "networks" in _imported_subpackages(PKG / "training" / "parts.py")
    assert _imported_subpackages(PKG / "training" / "loop.py") == {"training", "core"}


def _sibling_modules(path: Path) -> set[str]:
    """Modules of ``path``'s own package that it imports (at the top or inside functions)."""
    pkg = list(path.relative_to(PKG.parent).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = pkg[:len(pkg) - node.level + 1] if node.level else []
            mod = base + (node.module.split(".") if node.module else [])
            out |= {".".join(m[len(pkg):]) for m in [mod] + [mod + [a.name] for a in node.names] if m[:len(pkg)] == pkg}
        elif isinstance(node, ast.Import):
            out |= {a.name[len(".".join(pkg)) + 1:] for a in node.names if a.name.startswith(".".join(pkg) + ".")}
    return out


@pytest.mark.parametrize("package", ["inference", "postprocessing"])
def test_the_modules_of_a_package_import_each_other_without_circles(package):
    """inference.predictor and .ensemble, postprocessing.decide and .ranking once imported each other."""
    mods = {p.stem: p for p in (PKG / package).glob("*.py") if p.stem != "__init__"}
    graph = {m: _sibling_modules(p) & set(mods) - {m} for m, p in mods.items()}
    assert graph["predictor" if package == "inference" else "decide"]  # the checker sees the imports
    list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError on a circle


def test_the_public_predictor_is_the_inference_one():
    import autoseg
    from autoseg.inference.predictor import Predictor

    assert autoseg.Predictor is Predictor and not (PKG / "predictor.py").exists()
