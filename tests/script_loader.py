"""Load a script from tools/ or benchmarks/ as a module, for tests that call its functions.

``tools/*.py`` are shells around ``visionkit.cli``'s jobs: ``load_script("tools/infer.py")`` is
the job module itself (``visionkit.cli.predict``)."""

import functools
import importlib
import importlib.util
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# tools/<script>.py -> its job's module under visionkit.cli, where the names differ
JOB_MODULES = {
    "infer": "predict",
    "browse_dataset": "browse",
    "plot_logs": "plot",
    "train_rcnn_svms": "train_svms",
}


@functools.cache
def load_script(relative_path: str) -> types.ModuleType:
    """The script at ``relative_path`` from the repository root (``"tools/eval.py"``), executed
    once and cached per path: later calls return the same module object. Named after its folder
    and file (``tools_eval``) and not added to ``sys.modules``; its ``__name__`` is never
    ``"__main__"``, so the script's CLI entry point does not run.

    The scripts keep no module-level state that a test changes, so sharing one module between
    tests is safe. A test that patches a loaded script's globals should use ``monkeypatch`` (undone
    after the test) or load a fresh copy with ``load_script.__wrapped__(path)``.
    """
    path = ROOT / relative_path
    if path.parent.name == "tools":
        return importlib.import_module(f"visionkit.cli.{JOB_MODULES.get(path.stem, path.stem)}")
    spec = importlib.util.spec_from_file_location(f"{path.parent.name}_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
