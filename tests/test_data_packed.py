"""The packed dataset indexes (data/packed.py): the readers give the samples computed here
independently from the files, pickle small without their ground truth, and fork their loader
workers with the parent's objects frozen; benchmarks/coco_scale_loading.py on a tiny file."""

import gc
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from script_loader import load_script
from torch.utils.data import DataLoader, Dataset

from visionkit.data import CocoDetection, CocoSegmentation, VOCDetection, ensure_shapes
from visionkit.data.loader import FrozenHeapLoader
from visionkit.data.packed import PackedArrays, PackedMapping, PackedStrings
from visionkit.data.proposal_dataset import ProposalDataset
from visionkit.data.segmentation import voc_segmentation
from visionkit.data.shapes import CLASSES

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return ensure_shapes(tmp_path_factory.mktemp("shapes"), "train", 6, 64)


def expected_coco_targets(ann_file: Path) -> dict[int, tuple[list, list]]:
    """``{image id: (boxes, labels)}`` by hand: non-crowd boxes in file order, xywh -> xyxy in
    float32, clipped to the image, kept when wider and taller than 1 px; labels index the
    sorted category ids."""
    data = json.loads(ann_file.read_text())
    sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    cats = sorted(c["id"] for c in data["categories"])
    out = {i: ([], []) for i in sizes}
    for a in data["annotations"]:
        if a.get("iscrowd", 0):
            continue
        w, h = sizes[a["image_id"]]
        x, y, bw, bh = np.float32(a["bbox"])
        box = [
            min(max(v, 0), lim) for v, lim in zip((x, y, x + bw, y + bh), (w, h, w, h), strict=True)
        ]
        if box[2] - box[0] > 1 and box[3] - box[1] > 1:
            out[a["image_id"]][0].append(box)
            out[a["image_id"]][1].append(cats.index(a["category_id"]))
    return out


def check_detection_samples(ds, expected: dict[int, tuple[list, list]]) -> None:
    assert ds.ids == sorted(expected)
    for i, image_id in enumerate(ds.ids):
        boxes, labels = expected[image_id]
        _, target = ds[i]
        record = ds.record(i)
        assert target["image_id"] == record.image_id == image_id
        for got in (target["boxes"], torch.from_numpy(record.boxes)):
            assert torch.equal(got, torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        assert target["labels"].tolist() == record.labels.tolist() == labels
    assert ds.num_objects == sum(len(v[1]) for v in expected.values())


def test_coco_samples_match_the_file(tmp_path):
    rng = np.random.default_rng(0)
    sizes = {7: (40, 30), 3: (25, 50), 12: (60, 20), 5: (33, 33)}  # id: (width, height)
    images = []
    for image_id, (w, h) in sizes.items():
        cv2.imwrite(str(tmp_path / f"{image_id}.png"), np.zeros((h, w, 3), np.uint8))
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": w, "height": h})
    owners = rng.choice(list(sizes), 40)  # annotations of the images interleaved
    anns = []
    for k, o in enumerate(owners):  # boxes up to 1 px beyond the image (clipped), some degenerate
        size = np.array(sizes[int(o)], float)
        xy = rng.uniform(-1, size)
        wh = rng.uniform(0, size + 1 - xy)
        anns.append({"id": k + 1, "image_id": int(o), "category_id": int(rng.choice([9, 2, 40])),
                     "bbox": np.concatenate([xy, wh]).round(1).tolist(),
                     "iscrowd": int(rng.uniform() < 0.2)})  # fmt: skip
    categories = [{"id": c, "name": f"c{c}"} for c in (40, 9, 2)]
    ann_file = tmp_path / "ann.json"
    ann_file.write_text(
        json.dumps({"images": images, "annotations": anns, "categories": categories})
    )
    with pytest.warns(UserWarning, match="degenerate"):
        ds = CocoDetection(ann_file, tmp_path)
    check_detection_samples(ds, expected_coco_targets(ann_file))
    assert ds.cat_ids == [2, 9, 40] and ds.class_names == ["c2", "c9", "c40"]
    assert ds.image_path(1) == tmp_path / "5.png" and ds.read(12).shape == (20, 60, 3)
    # the lazily built ground truth holds every annotation, crowd regions included
    assert len(ds.coco.dataset["annotations"]) == 40 and sorted(ds.coco.imgs) == sorted(sizes)


def test_shapes_coco_and_voc_samples_match_their_files(shapes, tmp_path):
    check_detection_samples(
        CocoDetection(shapes["ann_file"], shapes["images"]),
        expected_coco_targets(shapes["ann_file"]),
    )
    (tmp_path / "VOCshapes").symlink_to(shapes["root"])
    voc = VOCDetection(tmp_path, ["shapes/train"], class_names=CLASSES)
    names = (shapes["root"] / "ImageSets" / "Main" / "train.txt").read_text().split()
    for i, name in enumerate(names):
        root = ET.parse(shapes["root"] / "Annotations" / f"{name}.xml").getroot()
        objects = root.findall("object")
        # VOC's 1-based inclusive pixels -> 0-based xyxy: xmin and ymin move by one
        boxes = [[float(o.findtext(f"bndbox/{t}")) - (t[1:] == "min") for t in
                  ("xmin", "ymin", "xmax", "ymax")] for o in objects]  # fmt: skip
        image, target = voc[i]
        assert target["image_id"] == i + 1 and voc.image_path(i).name == f"{name}.jpg"
        assert target["boxes"].tolist() == boxes
        assert target["labels"].tolist() == [CLASSES.index(o.findtext("name")) for o in objects]
        assert len(voc.coco.getAnnIds(imgIds=[i + 1])) == len(objects)


def test_proposals_are_packed_and_read_back(shapes):
    ds = CocoDetection(shapes["ann_file"], shapes["images"])
    rng = np.random.default_rng(1)
    given = {i: rng.uniform(-10, 80, (int(rng.integers(0, 9)), 4)) for i in ds.ids[:-1]}
    given = {
        i: np.concatenate([b[:, :2], b[:, :2] + np.abs(b[:, 2:])], 1) for i, b in given.items()
    }
    with_props = ProposalDataset(ds, given, max_proposals=5)
    packed = with_props.proposals
    assert isinstance(packed, PackedMapping) and sorted(packed) == sorted(given)
    assert all(np.array_equal(packed[i], given[i].astype(np.float32)) for i in given)
    assert packed.get(ds.ids[-1]) is None and ds.ids[-1] not in packed
    for i, image_id in enumerate(ds.ids):
        boxes = given.get(image_id, np.zeros((0, 4))).astype(np.float32).clip(0, 64)
        boxes = boxes[(boxes[:, 2] - boxes[:, 0] > 1e-2) & (boxes[:, 3] - boxes[:, 1] > 1e-2)]
        assert torch.equal(with_props[i][1]["proposals"], torch.from_numpy(boxes[:5]))
    assert with_props.coco is ds.coco


def test_segmentation_samples_match_their_files(shapes, tmp_path):
    (tmp_path / "VOCshapes").symlink_to(shapes["root"])
    seg = voc_segmentation(tmp_path, ["shapes/train"])
    names = (shapes["root"] / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    assert len(seg) == len(names)
    for i, name in enumerate(names):
        assert seg.image_path(i) == tmp_path / "VOCshapes" / "JPEGImages" / f"{name}.jpg"
        assert seg.label_path(i) == tmp_path / "VOCshapes" / "SegmentationClass" / f"{name}.png"
        label = np.array(Image.open(seg.label_path(i)))
        assert np.array_equal(seg[i][1]["sem_seg"].numpy(), label)
    coco_seg = CocoSegmentation(shapes["ann_file"], shapes["images"])
    truth = COCO(str(shapes["ann_file"]))
    for i, image_id in enumerate(coco_seg.ids):
        covered = np.zeros((64, 64, len(CLASSES) + 1), bool)  # which classes cover each pixel
        for a in truth.imgToAnns[image_id]:
            covered[..., a["category_id"]] |= truth.annToMask(a).astype(bool)
        expected = np.where(covered.sum(-1) > 1, 255, covered.argmax(-1))
        assert np.array_equal(coco_seg[i][1]["sem_seg"].numpy(), expected)


def test_pickled_dataset_is_small_and_leaves_its_ground_truth(tmp_path):
    bench = load_script("benchmarks/coco_scale_loading.py")
    ann_file = bench.generate(tmp_path, 0.01)  # 1183 images, about 8600 boxes
    (tmp_path / "img").mkdir()  # no pixel files: the records alone
    ds = CocoDetection(ann_file, tmp_path / "img")
    size = len(pickle.dumps(ds))
    assert size < ann_file.stat().st_size / 5, (size, ann_file.stat().st_size)
    assert len(ds.coco.dataset["annotations"]) == len(
        json.loads(ann_file.read_text())["annotations"]
    )
    assert len(pickle.dumps(ds)) == size  # the built ground truth is not pickled
    copy = pickle.loads(pickle.dumps(ds))
    assert copy._coco is None and copy.ids == ds.ids
    assert all(np.array_equal(copy.record(i).boxes, ds.record(i).boxes) for i in range(len(ds)))


def test_packed_containers():
    strings = PackedStrings(["a.jpg", "", "dossier/é.png"])
    assert [strings[i] for i in range(len(strings))] == ["a.jpg", "", "dossier/é.png"]
    arrays = PackedArrays.from_list(
        [np.ones((2, 4)), np.zeros((0, 4)), np.eye(4)[:1]], np.float32, (4,)
    )
    assert arrays.counts().tolist() == [2, 0, 1] and arrays[1].shape == (0, 4)
    item = arrays[0]
    item[:] = 7  # a copy: the shared index is unchanged
    assert arrays[0].tolist() == [[1.0] * 4] * 2
    grouped = PackedArrays.grouped(np.array([10, 11, 12, 13]), np.array([2, 0, 2, 0]), 3)
    assert [grouped[i].tolist() for i in range(3)] == [[11, 13], [], [10, 12]]


class FreezeCount(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        return gc.get_freeze_count()


def test_loader_workers_fork_with_the_heap_frozen():
    frozen = list(FrozenHeapLoader(FreezeCount(), batch_size=None, num_workers=2))
    plain = list(DataLoader(FreezeCount(), batch_size=None, num_workers=2))
    assert all(n > 1000 for n in frozen) and plain == [0] * 4
    assert gc.get_freeze_count() == 0  # the parent's objects are collected as before


def test_persistent_loader_workers_fork_once_with_the_heap_frozen():
    loader = FrozenHeapLoader(
        FreezeCount(), batch_size=None, num_workers=2, persistent_workers=True
    )
    first, second = list(loader), list(loader)  # the second pass reuses the workers
    assert all(n > 1000 for n in first + second)
    assert gc.get_freeze_count() == 0


def test_coco_scale_benchmark_tiny(tmp_path):
    command = [sys.executable, str(ROOT / "benchmarks" / "coco_scale_loading.py"), "--scale",
               "0.002", "--workers", "2", "--folder", str(tmp_path)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in proc.stdout.splitlines()
            if ln.startswith("| dicts") or ln.startswith("| packed")]  # fmt: skip
    assert [r[:2] for r in rows] == [["dicts", "no"], ["dicts", "yes"], ["packed", "no"],
                                     ["packed", "yes"]]  # fmt: skip
    assert {r[2] for r in rows} == {"237"} and len({r[3] for r in rows}) == 1  # images, boxes
    for r in rows:
        growth = [float(g) for g in r[7].split(",")]
        assert len(growth) == 2 and float(r[4]) >= 0 and float(r[6]) > 0
    assert all(float(g) < 100 for g in rows[3][7].split(","))
