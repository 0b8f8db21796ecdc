"""Readers, the shapes generator, transforms and collation, on tiny hand-made data."""

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from visionkit.config import AugmentConfig
from visionkit.data import CocoDetection, VOCDetection, build_transforms, collate_fn, ensure_shapes
from visionkit.data.shapes import CLASSES
from visionkit.data.voc import parse_voc_xml
from visionkit.errors import DataError
from visionkit.structures import convert_boxes


def write_image(path: Path, h: int = 60, w: int = 80) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), 128, np.uint8))


@pytest.fixture
def coco_dir(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        write_image(tmp_path / "img" / name)
    data = {
        "images": [
            {"id": i, "file_name": n, "width": 80, "height": 60}
            for i, n in [(10, "a.jpg"), (20, "b.jpg"), (30, "c.jpg")]
        ],
        "categories": [
            {"id": 90, "name": "zebra"},
            {"id": 3, "name": "car"},
            {"id": 7, "name": "train"},
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 10,
                "category_id": 90,
                "bbox": [10, 5, 20, 30],
                "area": 600,
                "iscrowd": 0,
            },
            {
                "id": 2,
                "image_id": 10,
                "category_id": 3,
                "bbox": [0, 0, 40, 40],
                "area": 1600,
                "iscrowd": 1,
            },
            {
                "id": 3,
                "image_id": 20,
                "category_id": 7,
                "bbox": [50, 10, 0.5, 20],
                "area": 10,
                "iscrowd": 0,
            },
            {
                "id": 4,
                "image_id": 20,
                "category_id": 3,
                "bbox": [70, 50, 10.5, 10.5],  # 0.5 px beyond the image: within the tolerance
                "area": 110,
                "iscrowd": 0,
            },
        ],
    }
    (tmp_path / "ann.json").write_text(json.dumps(data))
    return tmp_path


def test_coco_noncontiguous_ids_crowd_negatives_and_degenerate_boxes(coco_dir):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = CocoDetection(coco_dir / "ann.json", coco_dir / "img")
    assert [str(w.message) for w in caught if "degenerate" in str(w.message)] == [
        f"{coco_dir / 'ann.json'}: dropped 1 degenerate boxes (width or height <= 1 px)"
    ]
    assert ds.cat_ids == [3, 7, 90] and ds.class_names == ["car", "train", "zebra"]
    assert ds.ids == [10, 20, 30]
    image, t = ds[0]
    assert image.shape == (3, 60, 80) and image.dtype == torch.float32 and image.max() <= 1
    assert torch.equal(t["boxes"], torch.tensor([[10.0, 5.0, 30.0, 35.0]]))  # crowd left out
    assert t["labels"].tolist() == [2] and t["image_id"] == 10 and t["orig_size"] == (60, 80)
    _, t = ds[1]  # the 0.5 px wide box dropped; the other clipped to the 80 x 60 image
    assert torch.equal(t["boxes"], torch.tensor([[70.0, 50.0, 80.0, 60.0]])) and t[
        "labels"
    ].tolist() == [0]
    _, t = ds[2]
    assert t["boxes"].shape == (0, 4) and t["labels"].shape == (0,)
    assert len(ds.coco.getAnnIds(imgIds=[10])) == 2  # the crowd region stays for evaluation
    assert CocoDetection(coco_dir / "ann.json", coco_dir / "img", filter_empty=True).ids == [10, 20]


def test_coco_errors_name_the_file(coco_dir):
    with pytest.raises(DataError, match="not found: .*missing.json"):
        CocoDetection(coco_dir / "missing.json", coco_dir / "img")
    (coco_dir / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="bad.json: not valid JSON"):
        CocoDetection(coco_dir / "bad.json", coco_dir / "img")
    (coco_dir / "odd.json").write_text(json.dumps({"images": []}))
    with pytest.raises(DataError, match="odd.json: not a COCO instances file"):
        CocoDetection(coco_dir / "odd.json", coco_dir / "img")
    (coco_dir / "empty.json").write_text(
        json.dumps({"images": [], "annotations": [], "categories": []})
    )
    with pytest.raises(DataError, match="empty.json: holds no images"):
        CocoDetection(coco_dir / "empty.json", coco_dir / "img")
    (coco_dir / "img" / "a.jpg").write_bytes(b"\x00garbage")
    ds = CocoDetection(coco_dir / "ann.json", coco_dir / "img")
    with pytest.raises(DataError, match="cannot read image .*a.jpg"):
        ds[0]


def voc_xml(objects: list[tuple[str, list[int], int]]) -> str:
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, d in objects
    )
    return f"<annotation><size><width>80</width><height>60</height><depth>3</depth></size>{objs}</annotation>"


def test_voc_two_years_difficult_and_one_based_boxes(tmp_path):
    root = tmp_path / "VOCdevkit"
    for year, name, objects in [
        ("2007", "000001", [("dog", [1, 1, 40, 30], 0), ("cat", [10, 10, 20, 20], 1)]),
        ("2012", "2012_000001", [("tvmonitor", [5, 6, 80, 60], 0)]),
    ]:
        d = root / f"VOC{year}"
        write_image(d / "JPEGImages" / f"{name}.jpg")
        (d / "Annotations").mkdir(parents=True)
        (d / "Annotations" / f"{name}.xml").write_text(voc_xml(objects))
        (d / "ImageSets" / "Main").mkdir(parents=True)
        (d / "ImageSets" / "Main" / "trainval.txt").write_text(name + "\n")
    ds = VOCDetection(root, ["2007/trainval", "2012/trainval"])
    assert len(ds) == 2 and len(ds.class_names) == 20 and ds.cat_ids[0] == 1
    _, t = ds[0]
    assert torch.equal(t["boxes"], torch.tensor([[0.0, 0.0, 40.0, 30.0]]))  # 1-based -> 0-based
    assert t["labels"].tolist() == [ds.class_names.index("dog")]
    _, t = ds[1]
    assert t["labels"].tolist() == [19] and torch.equal(
        t["boxes"], torch.tensor([[4.0, 5.0, 80.0, 60.0]])
    )
    crowd = [a for a in ds.coco.dataset["annotations"] if a["iscrowd"]]
    assert len(crowd) == 1 and crowd[0]["bbox"] == [9.0, 9.0, 11.0, 11.0]
    _, t = VOCDetection(root, ["2007/trainval"], use_difficult=True)[0]
    assert len(t["labels"]) == 2
    with pytest.raises(DataError, match="Pascal VOC not found at .*nowhere.*shapes"):
        VOCDetection(tmp_path / "nowhere", ["2007/trainval"])
    with pytest.raises(DataError, match="split list not found"):
        VOCDetection(root, ["2007/test"])


def test_shapes_generation_is_deterministic_and_consistent(tmp_path):
    a = ensure_shapes(tmp_path / "a", "val", num_images=12, image_size=128)
    b = ensure_shapes(tmp_path / "b", "val", num_images=12, image_size=128)
    assert a["ann_file"].read_bytes() == b["ann_file"].read_bytes()
    first = sorted(a["images"].iterdir())[0]
    assert first.read_bytes() == (b["images"] / first.name).read_bytes()
    mtime = a["ann_file"].stat().st_mtime_ns
    assert ensure_shapes(tmp_path / "a", "val", num_images=12, image_size=128) == a
    assert a["ann_file"].stat().st_mtime_ns == mtime  # reused, not regenerated
    train = ensure_shapes(tmp_path / "a", "train", num_images=12, image_size=128)
    assert train["ann_file"].read_bytes() != a["ann_file"].read_bytes()  # another seed

    coco = json.loads(a["ann_file"].read_text())
    assert [c["name"] for c in coco["categories"]] == list(CLASSES)
    for ann in coco["annotations"]:
        img = next(i for i in coco["images"] if i["id"] == ann["image_id"])
        stem = Path(img["file_name"]).stem
        x, y, w, h = ann["bbox"]
        label = np.array(Image.open(a["root"] / "SegmentationClass" / f"{stem}.png"))
        region = label[int(y) : int(y + h) + 1, int(x) : int(x + w) + 1]
        assert (region == ann["category_id"]).any()  # palette index = class + 1
        assert ann["segmentation"] and ann["iscrowd"] == 0
    # the VOC XML of the first image holds the same boxes
    stem = Path(coco["images"][0]["file_name"]).stem
    parsed = parse_voc_xml(a["root"] / "Annotations" / f"{stem}.xml", list(CLASSES))
    anns = [x for x in coco["annotations"] if x["image_id"] == coco["images"][0]["id"]]
    expected = convert_boxes([x["bbox"] for x in anns], "xywh", "xyxy")
    assert torch.allclose(torch.from_numpy(parsed["boxes"]), expected, atol=1.0)


def test_shapes_sizes_span_coco_ranges(tmp_path):
    coco = json.loads(ensure_shapes(tmp_path, "val", num_images=60)["ann_file"].read_text())
    areas = np.array([a["area"] for a in coco["annotations"]])
    small, large = (areas < 32**2).mean(), (areas > 96**2).mean()
    assert 0.1 < small < 0.45 and 0.05 < large < 0.45 and 1 - small - large > 0.3
    per_image = np.bincount([a["image_id"] for a in coco["annotations"]])[1:]
    assert per_image.max() >= 3 and len(per_image) == 60


def test_train_transform_resizes_flips_and_keeps_boxes_inside():
    image = np.zeros((100, 200, 3), np.uint8)
    boxes, labels = np.array([[10.0, 20.0, 60.0, 80.0]]), np.array([3])
    flip_only = AugmentConfig(hflip=1.0, scale=0, translate=0, exposure=1, saturation=1)
    img, b, lb, _ = build_transforms(flip_only, None, train=True)(image, boxes, labels, None)
    assert (
        img.shape == (100, 200, 3)
        and np.allclose(b, [[140.0, 20.0, 190.0, 80.0]])
        and lb.tolist() == [3]
    )
    t = build_transforms(AugmentConfig(), (64, 96), train=True)
    mask = np.zeros((100, 200), np.uint8)
    mask[20:80, 10:60] = 4
    for _ in range(10):
        img, b, lb, m = t(image, boxes, labels, mask)
        assert img.shape == (64, 96, 3) and b.dtype == np.float32 and lb.dtype == np.int64
        assert (
            (b[:, [0, 2]] >= 0).all() and (b[:, [0, 2]] <= 96).all() and (b[:, [1, 3]] <= 64).all()
        )
        assert set(np.unique(m)) <= {0, 4, 255}
    img, b, lb, m = build_transforms(AugmentConfig(), (64, 96), train=False)(
        image, boxes, labels, mask
    )
    assert img is image and np.array_equal(b, boxes) and m is mask


def test_collate_keeps_sizes_and_box_counts():
    batch = [
        (
            torch.zeros(3, 10, 20),
            {"boxes": torch.zeros(2, 4), "labels": torch.zeros(2, dtype=torch.long)},
        ),
        (
            torch.zeros(3, 30, 5),
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
        ),
    ]
    images, targets = collate_fn(batch)
    assert [i.shape for i in images] == [(3, 10, 20), (3, 30, 5)]
    assert [len(t["boxes"]) for t in targets] == [2, 0]


def test_seeded_augmentation_is_reproducible_in_the_main_process_and_in_workers(tmp_path):
    from visionkit.config import DatasetConfig
    from visionkit.data import build_dataloader, build_dataset

    cfg = DatasetConfig(type="shapes", root=str(tmp_path), num_images=6, image_size=64)

    def first_batch(seed: int, workers: int) -> torch.Tensor:
        ds = build_dataset(cfg, AugmentConfig(), (48, 48), train=True)
        images, _ = next(iter(build_dataloader(ds, 6, workers, shuffle=False, seed=seed)))
        return torch.stack(images)

    assert torch.equal(first_batch(3, 0), first_batch(3, 0))
    assert not torch.equal(first_batch(3, 0), first_batch(4, 0))
    assert torch.equal(first_batch(3, 2), first_batch(3, 2))
