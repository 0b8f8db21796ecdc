"""tools/browse_dataset.py and the dataset summary: counts checked against the annotation files,
read here independently, on the shapes data, a COCO set with non-contiguous ids and crowd regions,
and a VOC set with difficult objects."""

import json
from collections import Counter
from pathlib import Path
from xml.etree import ElementTree as ET

import cv2
import numpy as np
import pytest
from test_tools_e2e import ROOT, run_tool

from visionkit.analysis.browse import draw_segmentation_sample
from visionkit.analysis.dataset_summary import detection_summary, format_summary
from visionkit.config.schema import AugmentConfig, DatasetConfig
from visionkit.data import build_dataset, ensure_shapes
from visionkit.structures.labels import IGNORE_LABEL
from visionkit.utils.draw import class_colors

YOLO = str(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml")


def expected_counts(images, objects, names, degenerate_min):
    """The summary's numbers from plain annotation records: ``images`` ``{id: (h, w)}``,
    ``objects`` ``(image id, class name, x1, y1, x2, y2, crowd)`` in 0-based pixels."""
    kept, crowd, sizes = Counter(), Counter(), Counter()
    degenerate = outside = 0
    with_objects = set()
    for image_id, name, x1, y1, x2, y2, is_crowd in objects:
        if is_crowd:
            crowd[name] += 1
            continue
        if x2 - x1 <= degenerate_min or y2 - y1 <= degenerate_min:
            degenerate += 1
            continue
        h, w = images[image_id]
        cw = min(max(x2, 0), w) - min(max(x1, 0), w)
        ch = min(max(y2, 0), h) - min(max(y1, 0), h)
        if cw <= degenerate_min or ch <= degenerate_min:
            outside += 1
            continue
        kept[name] += 1
        with_objects.add(image_id)
        area = cw * ch
        sizes["small" if area < 1024 else "medium" if area < 9216 else "large"] += 1
    return {
        "images": len(images),
        "objects": {n: kept[n] for n in names},
        "crowd": {n: crowd[n] for n in names},
        "images_without_objects": len(images) - len(with_objects),
        "degenerate": degenerate,
        "outside": outside,
        "box_sizes": {k: sizes[k] for k in ("small", "medium", "large")},
        "image_sizes": Counter(images.values()),
    }


def check(summary, expected):
    for key, value in expected.items():
        assert getattr(summary, key) == value, key


def browse(tmp_path, *overrides, augment=False, num=3):
    out = tmp_path / ("aug" if augment else "plain")
    proc = run_tool("browse_dataset.py", "--config", YOLO, "--num", str(num), "--output", str(out),
                    *(["--augment"] if augment else []), *overrides)  # fmt: skip
    drawn = sorted(out.glob("*.jpg"))
    assert len(drawn) == num
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    side = -(-num // int(np.ceil(np.sqrt(num))))
    assert sheet.shape[0] == side * 196 + 4 and len(np.unique(sheet.reshape(-1, 3), axis=0)) > 50
    return proc.stdout


def test_shapes_summary_matches_the_coco_file(tmp_path):
    cache = tmp_path / "cache"
    paths = ensure_shapes(cache, "train", num_images=12, image_size=96)
    data = json.loads(paths["ann_file"].read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    images = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
    objects = [(a["image_id"], names[a["category_id"]], a["bbox"][0], a["bbox"][1],
                a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3], a["iscrowd"])
               for a in data["annotations"]]  # fmt: skip
    cfg = DatasetConfig(type="shapes", root=str(cache), num_images=12, image_size=96)
    dataset = build_dataset(cfg, AugmentConfig(), [64, 64], train=True)
    summary = detection_summary(dataset)
    check(summary, expected_counts(images, objects, list(names.values()), 1.0))
    assert sum(summary.objects.values()) == dataset.num_objects == len(objects)
    overrides = [f"data.train.root={cache}", "data.train.num_images=12", "data.train.image_size=96"]
    assert format_summary(summary) in browse(tmp_path, *overrides)
    assert format_summary(summary) in browse(tmp_path, *overrides, augment=True, num=5)


def coco_set(tmp_path: Path) -> tuple[Path, Path, list]:
    """Four 200 x 150 images, categories 3, 7 and 12 (non-contiguous), crowd regions, an image
    with crowd only, one with nothing, a degenerate box and one just beyond its image's edge
    (within the tolerance: clipped away; further out is refused)."""
    anns = [  # image id, category id, xywh, crowd
        (1, 7, [10, 10, 20, 20], 0), (1, 12, [0, 0, 120, 100], 0), (1, 3, [100, 50, 60, 60], 1),
        (2, 3, [50, 50, 40, 40], 0), (2, 7, [5, 5, 0.5, 10], 0), (2, 12, [200.5, 10, 2, 20], 0),
        (2, 12, [150, 100, 51, 51], 0), (3, 7, [0, 0, 50, 50], 1),
    ]  # fmt: skip
    data = {
        "images": [{"id": i, "file_name": f"{i}.png", "width": 200, "height": 150}
                   for i in (1, 2, 3, 4)],
        "categories": [{"id": 12, "name": "kite"}, {"id": 3, "name": "car"},
                       {"id": 7, "name": "cat"}],
        "annotations": [{"id": k + 1, "image_id": i, "category_id": c, "bbox": b, "iscrowd": cr,
                         "area": b[2] * b[3]} for k, (i, c, b, cr) in enumerate(anns)],
    }  # fmt: skip
    (tmp_path / "images").mkdir()
    rng = np.random.default_rng(0)
    for i in (1, 2, 3, 4):
        image = rng.integers(0, 255, (150, 200, 3), np.uint8)
        cv2.imwrite(str(tmp_path / "images" / f"{i}.png"), image)
    (tmp_path / "ann.json").write_text(json.dumps(data))
    return tmp_path / "ann.json", tmp_path / "images", anns


def test_coco_summary_non_contiguous_ids_and_crowd_regions(tmp_path):
    ann, images, anns = coco_set(tmp_path)
    names = {3: "car", 7: "cat", 12: "kite"}
    objects = [(i, names[c], b[0], b[1], b[0] + b[2], b[1] + b[3], cr) for i, c, b, cr in anns]
    expected = expected_counts({i: (150, 200) for i in (1, 2, 3, 4)}, objects,
                               ["car", "cat", "kite"], 1.0)  # fmt: skip
    assert expected["crowd"] == {"car": 1, "cat": 1, "kite": 0}
    assert (expected["degenerate"], expected["outside"]) == (1, 1)
    assert expected["images_without_objects"] == 2
    assert expected["box_sizes"] == {"small": 1, "medium": 2, "large": 1}
    cfg = DatasetConfig(type="coco", root=str(images), ann_file=str(ann))
    with pytest.warns(UserWarning, match="dropped 2 degenerate boxes"):  # the reader agrees
        dataset = build_dataset(cfg, AugmentConfig(), [64, 64], train=False)
    summary = detection_summary(dataset)
    assert summary.class_names == ["car", "cat", "kite"]  # sorted ids 3, 7, 12
    check(summary, expected)
    assert sum(summary.objects.values()) == dataset.num_objects
    overrides = ["data.train.type=coco", f"data.train.root={images}", f"data.train.ann_file={ann}"]
    assert format_summary(summary) in browse(tmp_path, *overrides, num=4)
    assert "crowd in brackets" in browse(tmp_path, *overrides, augment=True, num=2)


VOC_OBJECTS = [  # image, class, VOC 1-based xmin, ymin, xmax, ymax, difficult
    ("a", "dog", 10, 10, 60, 60, 0), ("a", "person", 20, 5, 40, 120, 1),
    ("b", "car", 1, 1, 200, 150, 0), ("b", "dog", 201, 10, 202, 40, 0),  # beyond: clipped away
    ("c", "person", 50, 50, 60, 60, 1), ("c", "car", 100, 100, 101, 101, 0),
    ("d", "person", 30, 30, 90, 100, 0),
]  # fmt: skip


def voc_set(tmp_path: Path) -> Path:
    """A VOCdevkit with 4 images of 200 x 150, difficult objects, an image with difficult
    objects only and a box just beyond its image's edge (within the tolerance)."""
    voc = tmp_path / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
    names = sorted({o[0] for o in VOC_OBJECTS})
    for name in names:
        root = ET.fromstring("<annotation><size><width>200</width><height>150</height></size>"
                             "</annotation>")  # fmt: skip
        for _, cls, x1, y1, x2, y2, difficult in (o for o in VOC_OBJECTS if o[0] == name):
            obj = ET.SubElement(root, "object")
            ET.SubElement(obj, "name").text = cls
            ET.SubElement(obj, "difficult").text = str(difficult)
            box = ET.SubElement(obj, "bndbox")
            for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), (x1, y1, x2, y2), strict=True):
                ET.SubElement(box, tag).text = str(v)
        ET.ElementTree(root).write(voc / "Annotations" / f"{name}.xml")
        cv2.imwrite(str(voc / "JPEGImages" / f"{name}.jpg"), np.full((150, 200, 3), 90, np.uint8))
    (voc / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(names) + "\n")
    return tmp_path / "VOCdevkit"


def test_voc_summary_difficult_objects(tmp_path):
    from visionkit.structures.labels import VOC_CLASSES

    root = voc_set(tmp_path)
    ids = {name: k + 1 for k, name in enumerate(sorted({o[0] for o in VOC_OBJECTS}))}
    # VOC boxes are clipped when read: the one outside its image is left with no width
    objects = [(ids[i], c, min(x1 - 1, 200), y1 - 1, min(x2, 200), y2, d)
               for i, c, x1, y1, x2, y2, d in VOC_OBJECTS]  # fmt: skip
    expected = expected_counts(dict.fromkeys(ids.values(), (150, 200)), objects,
                               list(VOC_CLASSES), 1e-3)  # fmt: skip
    assert expected["crowd"]["person"] == 2 and expected["objects"]["person"] == 1
    assert (expected["degenerate"], expected["images_without_objects"]) == (1, 0)
    cfg = DatasetConfig(type="voc", root=str(root), splits=["2007/trainval"])
    dataset = build_dataset(cfg, AugmentConfig(), [64, 64], train=False)
    summary = detection_summary(dataset)
    assert summary.crowd_name == "difficult"
    check(summary, expected)
    assert sum(summary.objects.values()) == dataset.num_objects
    overrides = ["data.train.type=voc", f"data.train.root={root}",
                 "data.train.splits=[2007/trainval]"]  # fmt: skip
    assert format_summary(summary) in browse(tmp_path, *overrides, num=4)


def test_segmentation_drawing_outlines_each_class_and_has_a_legend(tmp_path):
    cfg = DatasetConfig(type="shapes", root=str(tmp_path), num_images=4, image_size=128)
    dataset = build_dataset(cfg, AugmentConfig(), None, False, "sem_seg", progress=False)
    drawn, image_id = draw_segmentation_sample(dataset, 0)
    seg = dataset[0][1]["sem_seg"].numpy()
    names = list(dataset.class_names)
    colors = class_colors(len(names))
    assert drawn.shape == (*seg.shape, 3) and image_id == 1
    for c in range(1, len(names)):  # every shape class: its legend swatch in its exact colour
        exact = (drawn == colors[c]).all(-1)
        assert exact.any(), names[c]
        if (seg == c).sum() > 50:  # a shape in the image: outlined inside its region
            inside = exact & (seg == c)
            assert inside.sum() > 10, names[c]
    # ignored pixels half white (not outlined: they are the shapes' 2-px outlines themselves)
    image = (dataset[0][0] * 255).round().permute(1, 2, 0).numpy()
    ignored = seg == IGNORE_LABEL  # (the legend, in the emptiest corner, covers none here)
    assert ignored.sum() > 50
    assert np.abs(drawn[ignored] - (image[ignored] + 255) / 2).max() <= 1.5
