"""``visionkit eval --predictions`` end to end: the default COCO backend (faster-coco-eval) against
``--coco-backend pycocotools`` on a generated val2017-sized COCO set and predictions file.

``benchmarks/coco_eval_speed.py`` times COCOeval alone on results already in memory; this times
the whole job as a user runs it, in one process (imports done first, outside the timing):
``visionkit.cli.eval.main`` with ``--config``, ``--predictions``, ``--out``, from reading the
config to writing the metrics, i.e. reading the instances file and building the ground truth,
reading and parsing the predictions JSON, checking every record, building COCOeval's results,
evaluate, accumulate, summarize, per-class AP.

The case is ``random_case`` of ``coco_eval_speed.py`` (val2017's shape: 5,000 images, 36,000
objects of 80 non-contiguous categories, 100 detections per image: about 500,000 records),
written to ``--workdir`` (default: a temporary folder): ``annotations/instances_val2017.json``,
``predictions.json`` (COCO results, as ``visionkit eval --save-predictions`` writes them),
``config.yaml`` (``base: faster_rcnn_shapes.yaml`` with ``data.val`` on the generated set) and
an empty ``val2017/`` image folder. Scoring a predictions file reads no pixels: the folder must
exist, and each image's header is compared with its size only where the file can be read
(``check_image_sizes``; a missing file is left to the read, which never comes), so no image file
is written (a real val2017 folder adds the 5,000 header reads to both backends' time).

The backends run ``--repeats`` times each, in alternating order; the table gives each one's
median seconds and the speed-up, then whether the two ``--out`` files hold the same 12 numbers
and per-class AP, then where the default backend's time goes (one more run with timers around
the stages; ``--profile N`` also prints cProfile's N slowest functions of that run)::

    python benchmarks/eval_end_to_end.py                # the val2017-sized case
    python benchmarks/eval_end_to_end.py --scale 0.01   # 1/100 of it (a smoke run)
    python benchmarks/eval_end_to_end.py --scale 0.1 --profile 25
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import importlib
import io
import json
import math
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from coco_eval_speed import (  # noqa: E402 (the sibling script)
    DETECTIONS_PER_IMAGE,
    VAL2017_IMAGES,
    VAL2017_OBJECTS,
    random_case,
    same,
)

from visionkit.cli import eval as eval_job  # noqa: E402
from visionkit.evaluation.coco_eval import STAT_NAMES  # noqa: E402
from visionkit.io.atomic import write_json, write_text  # noqa: E402
from visionkit.io.outputs import check_output_folder  # noqa: E402

BACKENDS = ("faster-coco-eval", "pycocotools")
# what main() imports on first use, imported here so that no run pays for it
LAZY_IMPORTS = (
    "visionkit.checkpoints.store",
    "visionkit.inference.api",
    "visionkit.inference.evaluation",
    "visionkit.io.atomic",
    "visionkit.models",
    "visionkit.evaluation.units",
    "pycocotools.cocoeval",
    "faster_coco_eval",
)
# (module, attribute, stage): the functions the breakdown times, each exclusive of the others
# it calls; those a version of the code does not have are left out
STAGES = (
    ("visionkit.inference.evaluation", "val_dataset",
     "ground truth: read, check and pack the instances JSON"),
    ("visionkit.data.coco.CocoDetection", "_build_coco", "ground truth: pycocotools index"),
    ("visionkit.inference.evaluation", "read_json", "predictions: read and parse the JSON"),
    ("visionkit.inference.evaluation", "check_coco_results", "predictions: check every record"),
    ("visionkit.evaluation.coco_eval", "coco_metrics",
     "results for COCOeval: copies for loadRes (before result_index); per-class AP"),
    ("visionkit.evaluation.coco_backends", "result_index",
     "results for COCOeval: records with id, area, iscrowd, and their index"),
    ("faster_coco_eval.COCO", "__init__", "faster-coco-eval: ground-truth index"),
    ("faster_coco_eval.COCO", "loadRes", "faster-coco-eval: results index (loadRes)"),
    ("faster_coco_eval.COCOeval_faster", "evaluate", "COCOeval: evaluate"),
    ("faster_coco_eval.COCOeval_faster", "accumulate", "COCOeval: accumulate"),
    ("faster_coco_eval.COCOeval_faster", "summarize", "COCOeval: summarize"),
)  # fmt: skip


def write_case(folder: Path, scale: float, seed: int) -> tuple[Path, Path, int]:
    """The instances file, predictions file, config and image folder of the case in ``folder``;
    returns the config, the predictions file and the number of records."""
    images = max(2, round(VAL2017_IMAGES * scale))
    objects = max(1, round(VAL2017_OBJECTS * scale))
    gt, results = random_case(seed, images, objects, DETECTIONS_PER_IMAGE)
    (folder / "annotations").mkdir(parents=True, exist_ok=True)
    (folder / "val2017").mkdir(exist_ok=True)
    ann_file = folder / "annotations" / "instances_val2017.json"
    write_json(ann_file, gt)  # each file to a temporary beside it, then renamed
    predictions = folder / "predictions.json"
    write_json(predictions, results)
    config = folder / "config.yaml"
    write_text(
        config,
        "base: faster_rcnn_shapes.yaml\n"
        f"model: {{num_classes: {len(gt['categories'])}}}\n"
        f"data:\n  val: {{type: coco, root: {json.dumps(str(folder / 'val2017'))}, "
        f"ann_file: {json.dumps(str(ann_file))}}}\n",
    )
    print(f"case: {images} images, {objects} objects, {len(results)} detections, "
          f"{len(gt['categories'])} categories, predictions {predictions.stat().st_size / 2**20:.1f} "
          f"MiB; {os.cpu_count()} CPU cores")  # fmt: skip
    return config, predictions, len(results)


def run_eval(config: Path, predictions: Path, out: Path, backend: str) -> float:
    """Seconds ``visionkit eval`` takes to score ``predictions`` with ``backend`` (its printed
    table swallowed)."""
    argv = ["--config", str(config), "--predictions", str(predictions), "--out", str(out),
            "--coco-backend", backend, "--no-progress"]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        code = eval_job.main(argv)
        seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"visionkit eval {' '.join(argv)} exited with {code}")
    return seconds


class StageTimer:
    """Exclusive seconds per stage: each wrapped function's time less that of the wrapped
    functions it calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.stack: list[float] = []  # time of wrapped callees, per open call

    def wrap(self, fn: Callable, stage: str) -> Callable:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.stack.append(0.0)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                inner = self.stack.pop()
                self.seconds[stage] = self.seconds.get(stage, 0.0) + elapsed - inner
                if self.stack:
                    self.stack[-1] += elapsed

        return timed


def _owner(path: str) -> Any:
    """The module, or the class inside a module, that ``path`` names (None if absent)."""
    module, _, attr = path.rpartition(".")
    try:
        return importlib.import_module(path)
    except ImportError:
        try:
            return getattr(importlib.import_module(module), attr, None)
        except ImportError:
            return None


@contextlib.contextmanager
def timed_stages(timer: StageTimer):
    """:data:`STAGES` wrapped by ``timer`` for the duration, then restored."""
    patched = []
    for path, attr, stage in STAGES:
        owner = _owner(path)
        fn = owner.__dict__.get(attr) if owner is not None else None
        if fn is None:
            continue
        patched.append((owner, attr, fn))
        setattr(owner, attr, timer.wrap(fn, stage))
    try:
        yield
    finally:
        for owner, attr, fn in reversed(patched):
            setattr(owner, attr, fn)


def breakdown(config: Path, predictions: Path, out: Path, profile: int) -> None:
    """One more run of the default backend with :data:`STAGES` timed: a markdown table."""
    timer = StageTimer()
    profiler = cProfile.Profile() if profile else None
    with timed_stages(timer):
        if profiler:
            profiler.enable()
        total = run_eval(config, predictions, out, BACKENDS[0])
        if profiler:
            profiler.disable()
    rows = [*timer.seconds.items(), ("the rest (config, checks of paths, table, --out)",
                                     total - sum(timer.seconds.values()))]  # fmt: skip
    print(f"\nwhere the {BACKENDS[0]} run's time goes"
          f"{' (under cProfile: slower)' if profiler else ''}:")  # fmt: skip
    print("\n| stage | seconds | share |\n|---|---:|---:|")
    for stage, seconds in rows:
        print(f"| {stage} | {seconds:.2f} | {seconds / total:.0%} |")
    print(f"| total | {total:.2f} | 100% |")
    if profiler:
        print()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(profile)


def box_numbers(out: Path) -> dict[str, float]:
    """The ``bbox`` section of a ``--out`` file (JSON null: NaN)."""
    data = json.loads(out.read_text())["bbox"]
    return {k: math.nan if v is None else float(v) for k, v in data.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the images and objects")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=2, help="timed runs of each backend")
    p.add_argument("--workdir", help="where the case is written (default: a temporary folder)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also print cProfile's N slowest functions of the breakdown run")  # fmt: skip
    args = p.parse_args(argv)
    if not 0 < args.scale <= 1 or args.repeats < 1:
        p.error("--scale must be in (0, 1] and --repeats at least 1")
    for name in LAZY_IMPORTS:
        importlib.import_module(name)
    print(f"command: python benchmarks/eval_end_to_end.py {' '.join(sys.argv[1:])}".rstrip())
    with contextlib.ExitStack() as stack:
        if args.workdir:
            check_output_folder(args.workdir, "--workdir")  # before generating the case
        folder = args.workdir or stack.enter_context(tempfile.TemporaryDirectory())
        folder = Path(folder)
        config, predictions, _ = write_case(folder, args.scale, args.seed)
        outs = {b: folder / f"metrics_{b}.json" for b in BACKENDS}
        seconds: dict[str, list[float]] = {b: [] for b in BACKENDS}
        for k in range(args.repeats):
            for backend in BACKENDS if k % 2 == 0 else reversed(BACKENDS):
                seconds[backend].append(run_eval(config, predictions, outs[backend], backend))
        median = {b: statistics.median(s) for b, s in seconds.items()}
        print("\n| backend | seconds (median) | runs | speed-up over pycocotools |")
        print("|---|---:|---|---:|")
        for b in reversed(BACKENDS):
            runs = ", ".join(f"{s:.2f}" for s in seconds[b])
            print(f"| {b} | {median[b]:.2f} | {runs} | {median['pycocotools'] / median[b]:.2f}x |")
        numbers = {b: box_numbers(out) for b, out in outs.items()}
        equal = same(*numbers.values())
        twelve = all(
            numbers[BACKENDS[0]][k] == numbers[BACKENDS[1]][k]
            or (math.isnan(numbers[BACKENDS[0]][k]) and math.isnan(numbers[BACKENDS[1]][k]))
            for k in STAT_NAMES
        )
        print(f"\nthe 12 numbers and per-class AP equal to 1e-6: {'yes' if equal else 'NO'}"
              f" (the 12 numbers bit for bit: {'yes' if twelve else 'no'})")  # fmt: skip
        breakdown(config, predictions, folder / "metrics_breakdown.json", args.profile)
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
