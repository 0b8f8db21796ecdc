"""COCO-scale loading: start-up time and the memory of DataLoader workers, dicts vs packed index.

A forked loader worker shares its parent's memory until it writes a page, and merely reading a
Python object writes its reference count; so an index held as lists and dicts (a pycocotools
``COCO`` object, a dict of per-image arrays) is copied into every worker as it iterates, while
the packed index (``visionkit/data/packed.py``: flat numpy arrays) stays shared. This generates a
train2017-sized instances file (118,287 images, about 860k boxes, 80 categories; no pixel files:
the workers read every sample's record, what ``__getitem__`` reads before it decodes the image,
with a full garbage collection every 2048 samples, as in a worker that allocates tensors)
and, for each layout, with a plain DataLoader and with the toolkit's (``FrozenHeapLoader`` of
``visionkit/data/loader.py``: ``gc.freeze()`` as the workers fork), measures in a fresh process:
the dataset's start-up (constructing it from the JSON), then, with 4 workers iterating over all
indices, each worker's unique memory (USS: Private_Clean + Private_Dirty of
``/proc/<pid>/smaps_rollup``) beyond its start, and the main process's RSS. One markdown table:

    python benchmarks/coco_scale_loading.py                # full size (a few GB of memory)
    python benchmarks/coco_scale_loading.py --scale 0.1    # 1/10 of it

``dicts`` is a stand-in, defined below, holding the Python structures ``CocoDetection`` held
before the packed index (a pycocotools ``COCO`` object, ``{image id: (boxes, labels)}``, the
id list); ``packed`` is today's ``visionkit.data.CocoDetection``. The file is cached in
``--folder`` (default: a temporary folder) under a name carrying its size.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset

from visionkit.data.coco import CocoDetection, load_coco
from visionkit.data.coco_checks import check_image_sizes
from visionkit.data.loader import FrozenHeapLoader
from visionkit.data.packed import Record
from visionkit.structures.boxes import clip_boxes, convert_boxes, valid_boxes_mask

TRAIN2017_IMAGES, TRAIN2017_BOXES = 118_287, 860_001
# COCO's 80 category ids (1..90 with gaps)
COCO_CAT_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
MIB = 2**20
COLLECT_EVERY = 2048


def generate(folder: Path, scale: float, seed: int = 0) -> Path:
    """A train2017-sized instances file (times ``scale``) in ``folder``, written once: images
    320..640 px a side, a Poisson number of boxes each (mean 860k / 118k), 1 % crowd, each box's
    polygon its 4 corners."""
    n = max(2, round(TRAIN2017_IMAGES * scale))
    path = folder / f"instances_train2017_like_{n}.json"
    if path.is_file():
        return path
    rng = np.random.default_rng(seed)
    sizes = rng.integers(320, 641, (n, 2))  # (width, height)
    counts = rng.poisson(TRAIN2017_BOXES / TRAIN2017_IMAGES, n)
    owner = np.repeat(np.arange(n), counts)
    wh = sizes[owner] * rng.uniform(0.02, 0.6, (len(owner), 2))
    xy = (sizes[owner] - wh) * rng.uniform(0, 1, (len(owner), 2))
    boxes = np.round(np.concatenate([xy, wh], 1), 2).tolist()
    cats, crowd = rng.choice(COCO_CAT_IDS, len(owner)).tolist(), rng.uniform(size=len(owner)) < 0.01
    images = [{"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "width": w, "height": h}
              for i, (w, h) in enumerate(sizes.tolist())]  # fmt: skip
    anns = [{"id": k + 1, "image_id": int(owner[k]) + 1, "category_id": cats[k], "bbox": b,
             "area": round(b[2] * b[3], 2), "iscrowd": int(crowd[k]),
             "segmentation": [[b[0], b[1], b[0] + b[2], b[1], b[0] + b[2], b[1] + b[3], b[0],
                               b[1] + b[3]]]}
            for k, b in enumerate(boxes)]  # fmt: skip
    categories = [{"id": c, "name": f"class{c}", "supercategory": "thing"} for c in COCO_CAT_IDS]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    tmp.replace(path)
    return path


class DictsLayout:
    """STAND-IN for the index ``CocoDetection`` kept before ``data/packed.py``: the pycocotools
    ``COCO`` object, ``{image id: (boxes (n, 4) float32 xyxy, labels (n,) int64)}`` built by a
    per-image loop, the image id list; ``record`` reads what its ``__getitem__`` read."""

    def __init__(self, ann_file: Path, image_dir: Path) -> None:
        self.image_dir, self.coco = image_dir, load_coco(ann_file)
        self._stored = check_image_sizes(self.coco.dataset["images"], image_dir, ann_file)
        self.cat_ids = sorted(self.coco.getCatIds())
        label_of = {c: i for i, c in enumerate(self.cat_ids)}
        self._targets: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for img_id in sorted(self.coco.imgs):
            info = self.coco.imgs[img_id]
            anns = [a for a in self.coco.imgToAnns.get(img_id, []) if not a.get("iscrowd", 0)]
            boxes = convert_boxes(
                np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4), "xywh", "xyxy"
            )
            boxes = clip_boxes(boxes, (info["height"], info["width"]))
            keep = valid_boxes_mask(boxes, 1.0)
            labels = np.array([label_of[a["category_id"]] for a in anns], np.int64)[keep.numpy()]
            self._targets[img_id] = (boxes[keep].numpy(), labels)
        self.ids = sorted(self.coco.imgs)

    def __len__(self) -> int:
        return len(self.ids)

    def record(self, index: int) -> Record:
        img_id = self.ids[index]
        info = self.coco.imgs[img_id]
        boxes, labels = self._targets[img_id]
        return Record(img_id, self.image_dir / info["file_name"], (info["height"], info["width"]),
                      boxes, labels)  # fmt: skip


class Records(Dataset):
    """Sample ``i`` of a dataset up to its image decode: its record's number of boxes. Every
    :data:`COLLECT_EVERY` samples a full garbage collection runs, as it does in a training
    worker that allocates images and tensors (it writes the header of every tracked object)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset, self.seen = dataset, 0  # samples this process has read

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> int:
        self.seen += 1
        if self.seen % COLLECT_EVERY == 0:
            gc.collect()
        return len(self.dataset.record(index).boxes)


def uss(pid: int | str = "self") -> int:
    """Unique memory of a process in bytes: Private_Clean + Private_Dirty of its smaps_rollup."""
    fields = Path(f"/proc/{pid}/smaps_rollup").read_text().split("\n")
    return 1024 * sum(int(f.split()[1]) for f in fields if f.startswith("Private_"))


def rss(pid: int | str = "self") -> int:
    """Resident memory of a process in bytes (VmRSS)."""
    status = Path(f"/proc/{pid}/status").read_text().split("\n")
    return 1024 * int(next(f for f in status if f.startswith("VmRSS")).split()[1])


def note_start(folder: str, worker_id: int) -> None:
    """worker_init_fn: write this worker's USS at its start to ``folder/<pid>``."""
    Path(folder, str(os.getpid())).write_text(str(uss()))


def total(batch: list[int]) -> int:
    return sum(batch)


def measure(ann_file: Path, layout: str, freeze: bool, workers: int) -> dict[str, float]:
    """One row: start-up seconds, boxes seen, per-worker USS growth and main RSS (MiB)."""
    image_dir = Path(tempfile.mkdtemp())  # no pixel files: image headers are not found
    start = time.perf_counter()
    dataset = (
        DictsLayout(ann_file, image_dir)
        if layout == "dicts"
        else CocoDetection(ann_file, image_dir)
    )
    startup = time.perf_counter() - start
    starts = tempfile.mkdtemp()
    loader = (FrozenHeapLoader if freeze else DataLoader)(
        Records(dataset), batch_size=64, num_workers=workers, collate_fn=total,
        worker_init_fn=functools.partial(note_start, starts), persistent_workers=True,
    )  # fmt: skip
    start = time.perf_counter()
    boxes = sum(loader)  # the workers stay alive (persistent) to be measured
    iterate = time.perf_counter() - start
    growth = [(uss(p.name) - int(p.read_text())) / MIB for p in Path(starts).iterdir()]
    return {"startup": startup, "iterate": iterate, "boxes": boxes, "images": len(dataset),
            "growth": sorted(growth), "main_rss": rss() / MIB}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="fraction of train2017's size")
    p.add_argument("--folder", default="", help="where the generated file is cached")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--layouts", nargs="+", default=["dicts", "packed"])
    p.add_argument("--one", nargs=2, metavar=("LAYOUT", "FREEZE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    folder = Path(args.folder or tempfile.gettempdir()) / "visionkit-coco-scale"
    folder.mkdir(parents=True, exist_ok=True)
    ann_file = generate(folder, args.scale)
    if args.one:  # one row, in its own process
        print(json.dumps(measure(ann_file, args.one[0], args.one[1] == "yes", args.workers)))
        return
    print(f"command: python benchmarks/coco_scale_loading.py --scale {args.scale:g}")
    print(f"file: {ann_file} ({ann_file.stat().st_size / MIB:.0f} MiB); {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"| layout | gc.freeze | images | boxes | start-up s | iterate s | main RSS MiB | "
          f"USS growth per worker MiB ({args.workers} workers) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for layout in args.layouts:
        for freeze in ("no", "yes"):
            command = [sys.executable, __file__, "--scale", str(args.scale), "--folder",
                       str(folder.parent), "--workers", str(args.workers), "--one", layout, freeze]  # fmt: skip
            proc = subprocess.run(command, capture_output=True, text=True, check=True)
            r = json.loads(proc.stdout.splitlines()[-1])
            each = ", ".join(f"{g:.1f}" for g in r["growth"])
            print(f"| {layout} | {freeze} | {r['images']} | {r['boxes']} | {r['startup']:.2f} | "
                  f"{r['iterate']:.2f} | {r['main_rss']:.0f} | {each} |")  # fmt: skip


if __name__ == "__main__":
    main()
