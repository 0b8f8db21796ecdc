"""The package's imports are layered: a module imports only from its own package or lower layers,
never from a sibling (another package of its own layer: ``data`` and ``models``, ``inference``
and ``analysis``, ...), and no two top-level packages import each other, directly or around a
loop (docs/architecture.md).

The checker reads every ``.py`` file under ``visionkit/`` with :mod:`ast` and collects each
``import`` / ``from ... import`` of visionkit, at module level or inside functions (relative ones
resolved); ``import_map`` gives them, ``upward_imports``, ``sibling_imports``, ``imports_between``
and ``package_cycles`` judge them.
"""

import ast
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "visionkit"

# Lowest first; the root visionkit/__init__.py is above them all. The packages of one layer are
# siblings: neither imports the other.
LAYERS = (
    ("errors",),
    ("structures", "io", "utils"),  # boxes and labels; files; small helpers (drawing, validators)
    ("config",),
    ("proposals",),
    ("data", "models"),  # the task is an argument of the data builders, not read from models
    ("checkpoints",),  # reading and writing weights: below training, inference and export
    ("evaluation",),
    ("engine",),
    ("export",),  # ONNX export and runtime: visionkit.load and VisionModel.export reach it
    ("inference", "analysis"),
    ("cli",),  # the commands (visionkit <command>): may import any package below
)
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}

ImportMap = dict[str, list[tuple[str, int]]]  # module -> [(imported visionkit module, line)]


def module_name(path: Path, package_dir: Path) -> str:
    """``visionkit/data/coco.py`` -> ``visionkit.data.coco``; a package is its ``__init__.py``."""
    parts = path.relative_to(package_dir.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(node: ast.AST, package: str, modules: set[str]) -> list[str]:
    """The modules an import statement names (none for other nodes), relative ones resolved
    from ``package``; ``from a.b import c`` names ``a.b.c`` when that is one of ``modules``,
    else ``a.b``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        parts = package.split(".")
        base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
    names = {f"{base}.{alias.name}" for alias in node.names}
    return sorted({name if name in modules else base for name in names})


def import_map(package_dir: Path) -> ImportMap:
    """Every import of the package by every module under ``package_dir``, with its line."""
    files = {module_name(p, package_dir): p for p in sorted(package_dir.rglob("*.py"))}
    modules, out = set(files), {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        found = [
            (imported, node.lineno)
            for node in ast.walk(tree)
            for imported in imported_modules(node, package, modules)
            if imported.split(".")[0] == package_dir.name
        ]
        out[module] = sorted(found, key=lambda item: (item[1], item[0]))
    return out


def top_package(module: str) -> str | None:
    """``visionkit.data.coco`` -> ``data``; None for the root package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def upward_imports(imports: ImportMap) -> list[str]:
    """``module -> imported (line)`` for each import of a higher layer (or of the root package,
    or from or of a top-level package that has no layer)."""
    bad = []
    for module, found in sorted(imports.items()):
        src = top_package(module)
        if src is None:  # the root package may import anything
            continue
        for imported, line in found:
            dst = top_package(imported)
            if src not in LAYER_OF or dst not in LAYER_OF or LAYER_OF[dst] > LAYER_OF[src]:
                bad.append(f"{module} -> {imported} ({line})")
    return bad


def sibling_imports(imports: ImportMap) -> list[str]:
    """``module -> imported (line)`` for each import of another package of the module's own
    layer."""
    bad = []
    for module, found in sorted(imports.items()):
        src = top_package(module)
        for imported, line in found:
            dst = top_package(imported)
            if src != dst and src in LAYER_OF and LAYER_OF.get(dst) == LAYER_OF[src]:
                bad.append(f"{module} -> {imported} ({line})")
    return bad


def imports_between(imports: ImportMap, src: str, dst: str) -> list[str]:
    """``module -> imported (line)`` for each import of top-level package ``dst`` by a module
    of ``src``."""
    return [
        f"{module} -> {imported} ({line})"
        for module, found in sorted(imports.items())
        if top_package(module) == src
        for imported, line in found
        if top_package(imported) == dst
    ]


def package_cycles(imports: ImportMap) -> list[str]:
    """One line per group of top-level packages that import each other around a loop, with the
    imports that close it."""
    edges: dict[tuple[str, str], list[str]] = {}
    for module, found in imports.items():
        for imported, line in found:
            src, dst = top_package(module), top_package(imported)
            if None not in (src, dst) and src != dst:
                edges.setdefault((src, dst), []).append(f"{module} -> {imported} ({line})")
    reach = {a: {b for x, b in edges if x == a} for a, _ in edges}
    changed = True
    while changed:  # transitive closure; there are a dozen packages
        changed = False
        for seen in reach.values():
            more = set().union(*(reach.get(b, set()) for b in seen)) - seen
            if more:
                seen |= more
                changed = True
    groups = {
        frozenset({a} | {b for b in seen if a in reach.get(b, ())}) for a, seen in reach.items()
    }
    lines = []
    for group in sorted((g for g in groups if len(g) > 1), key=sorted):
        inside = [e for (a, b), es in sorted(edges.items()) if {a, b} <= group for e in es]
        lines.append(f"cycle between {', '.join(sorted(group))}: {'; '.join(inside)}")
    return lines


def test_imports_only_go_down_the_layers():
    bad = upward_imports(import_map(PACKAGE))
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_siblings_do_not_import_each_other():
    bad = sibling_imports(import_map(PACKAGE))
    assert not bad, "imports between packages of one layer:\n" + "\n".join(bad)


def test_data_and_models_do_not_import_each_other():
    imports = import_map(PACKAGE)
    bad = imports_between(imports, "data", "models") + imports_between(imports, "models", "data")
    assert not bad, "imports between data and models:\n" + "\n".join(bad)


def test_inference_does_not_import_engine():
    bad = imports_between(import_map(PACKAGE), "inference", "engine")
    assert not bad, "inference imports the training engine:\n" + "\n".join(bad)


def test_no_cycles_between_top_level_packages():
    cycles = package_cycles(import_map(PACKAGE))
    assert not cycles, "\n".join(cycles)


def _inject(copy: Path, relative: str, statement: str) -> int:
    """Append a function importing ``statement`` to ``copy/relative``; the statement's line."""
    target = copy / relative
    source = target.read_text()
    target.write_text(source + f"\n\ndef injected():\n    {statement}\n")
    return len(source.splitlines()) + 4


def test_checker_reports_an_injected_upward_import(tmp_path):
    copy = tmp_path / "visionkit"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    line = _inject(copy, "data/transforms.py", "from visionkit.engine import trainer")
    before = upward_imports(import_map(PACKAGE))  # models/ may be mid-rewrite: compare with it
    after = upward_imports(import_map(copy))
    assert set(before) <= set(after)
    assert set(after) - set(before) == {
        f"visionkit.data.transforms -> visionkit.engine.trainer ({line})"
    }


def test_checker_reports_injected_sibling_and_data_models_imports(tmp_path):
    copy = tmp_path / "visionkit"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    browse = _inject(copy, "analysis/browse.py", "from visionkit.inference import writers")
    data = _inject(copy, "data/transforms.py", "from visionkit.models import build_model")
    models = _inject(copy, "models/__init__.py", "from visionkit.data import voc")
    expected = {
        f"visionkit.analysis.browse -> visionkit.inference.writers ({browse})",
        f"visionkit.data.transforms -> visionkit.models ({data})",
        f"visionkit.models -> visionkit.data.voc ({models})",
    }
    before, after = import_map(PACKAGE), import_map(copy)
    assert set(sibling_imports(after)) - set(sibling_imports(before)) == expected
    assert set(upward_imports(after)) == set(upward_imports(before))  # one layer: not upward
    assert set(imports_between(after, "data", "models")) - set(
        imports_between(before, "data", "models")
    ) == {f"visionkit.data.transforms -> visionkit.models ({data})"}
    assert set(imports_between(after, "models", "data")) - set(
        imports_between(before, "models", "data")
    ) == {f"visionkit.models -> visionkit.data.voc ({models})"}


def test_checker_reports_an_injected_inference_to_engine_import(tmp_path):
    copy = tmp_path / "visionkit"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    line = _inject(copy, "inference/writers.py", "from visionkit.engine import trainer")
    before = imports_between(import_map(PACKAGE), "inference", "engine")
    after = imports_between(import_map(copy), "inference", "engine")
    assert set(after) - set(before) == {
        f"visionkit.inference.writers -> visionkit.engine.trainer ({line})"
    }


def test_checker_resolves_relative_and_root_imports_and_finds_cycles(tmp_path):
    files = {
        "__init__.py": "from visionkit import engine\n",  # the root: above every layer
        "engine/__init__.py": "",
        "engine/loop.py": "",
        "io/__init__.py": "from ..utils import comm\n",
        "utils/__init__.py": "",
        "utils/comm.py": "import visionkit.io\n",
        "data/__init__.py": "from . import reader\n",
        "data/reader.py": "def f():\n    from ..engine.loop import run\n    from visionkit import data\n",
    }
    for name, text in files.items():
        (tmp_path / "visionkit" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "visionkit" / name).write_text(text)
    imports = import_map(tmp_path / "visionkit")
    assert imports["visionkit.data"] == [("visionkit.data.reader", 1)]
    assert imports["visionkit.data.reader"] == [("visionkit.engine.loop", 2), ("visionkit.data", 3)]
    assert upward_imports(imports) == ["visionkit.data.reader -> visionkit.engine.loop (2)"]
    assert sibling_imports(imports) == [  # io and utils: one layer
        "visionkit.io -> visionkit.utils.comm (1)",
        "visionkit.utils.comm -> visionkit.io (1)",
    ]
    assert package_cycles(imports) == [
        "cycle between io, utils: visionkit.io -> visionkit.utils.comm (1); "
        "visionkit.utils.comm -> visionkit.io (1)"
    ]
