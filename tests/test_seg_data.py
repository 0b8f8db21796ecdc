"""Segmentation readers (VOC palette PNGs, SBD .mat, COCO instances -> label maps, shapes) and
mask-aware augmentation."""

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from visionkit.config import AugmentConfig, DatasetConfig
from visionkit.data import CocoSegmentation, build_dataset, build_transforms, voc_segmentation
from visionkit.data.shapes import _palette
from visionkit.errors import ConfigError, DataError


def write_png(path, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    png = Image.fromarray(label.astype(np.uint8), mode="P")
    png.putpalette(_palette())
    png.save(path)


def write_jpg(path, h: int, w: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), 90, np.uint8))


def test_voc_png_boundaries_sbd_and_errors(tmp_path):
    root = tmp_path / "VOCdevkit"
    label = np.zeros((6, 8), np.uint8)
    label[1:5, 2:6] = 255
    label[2:4, 3:5] = 15  # person, with a 255 boundary around it
    voc = root / "VOC2012"
    for name in ("a", "b"):
        write_jpg(voc / "JPEGImages" / f"{name}.jpg", 6, 8)
        write_png(voc / "SegmentationClass" / f"{name}.png", label)
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("a\nb\n")
    ds = voc_segmentation(root, ["2012/train"])
    assert len(ds) == 2 and ds.class_names[0] == "background" and len(ds.class_names) == 21
    image, t = ds[0]
    assert image.shape == (3, 6, 8) and t["sem_seg"].dtype == torch.int64
    assert torch.equal(t["sem_seg"], torch.from_numpy(label).long())  # indices, not colours
    assert t["boxes"].shape == (0, 4) and t["image_id"] == 1
    # SBD: a .mat label map; "a" is already listed by VOC, so only "c" is added
    scipy_io = pytest.importorskip("scipy.io")
    sbd = root / "SBD"
    for name in ("a", "c"):
        write_jpg(sbd / "img" / f"{name}.jpg", 6, 8)
        (sbd / "cls").mkdir(parents=True, exist_ok=True)
        scipy_io.savemat(sbd / "cls" / f"{name}.mat", {"GTcls": {"Segmentation": label % 255}})
    (sbd / "train.txt").write_text("a\nc\n")
    both = voc_segmentation(root, ["2012/train", "sbd/train"])
    assert len(both) == 3 and both.label_path(2).name == "c.mat"
    assert torch.equal(both[2][1]["sem_seg"], torch.from_numpy(label % 255).long())
    # errors: a label outside the classes, a missing split list, a missing root
    write_png(voc / "SegmentationClass" / "b.png", np.full((6, 8), 30, np.uint8))
    with pytest.raises(DataError, match="b.png: label 30 outside 0..20 and 255"):
        ds[1]
    with pytest.raises(DataError, match="split list not found"):
        voc_segmentation(root, ["2012/val"])
    with pytest.raises(DataError, match="Pascal VOC not found.*shapes"):
        voc_segmentation(tmp_path / "nowhere", ["2012/train"])


def test_coco_instances_to_label_maps(tmp_path):
    write_jpg(tmp_path / "img" / "a.jpg", 20, 30)
    write_jpg(tmp_path / "img" / "b.jpg", 20, 30)
    square = lambda x0, y0, x1, y1: [[x0, y0, x1, y0, x1, y1, x0, y1]]  # noqa: E731
    anns = [  # person (1) and car (3) overlap on x 10..15; a crowd car region; a dog (18) alone
        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": square(0, 0, 15, 10)},
        {"id": 2, "image_id": 1, "category_id": 3, "segmentation": square(10, 0, 25, 10)},
        {"id": 3, "image_id": 1, "category_id": 3, "iscrowd": 1,
         "segmentation": {"counts": [20 * 28, 40], "size": [20, 30]}},
        {"id": 4, "image_id": 2, "category_id": 18, "segmentation": square(5, 5, 10, 10)},
    ]  # fmt: skip
    for a in anns:
        a.setdefault("iscrowd", 0)
        a.update(bbox=[0, 0, 1, 1], area=1)
    data = {
        "images": [{"id": i, "file_name": n, "width": 30, "height": 20} for i, n in [(1, "a.jpg"),
                   (2, "b.jpg")]],
        "categories": [{"id": c, "name": n} for c, n in [(18, "dog"), (1, "person"), (3, "car")]],
        "annotations": anns,
    }  # fmt: skip
    (tmp_path / "ann.json").write_text(json.dumps(data))
    ds = CocoSegmentation(tmp_path / "ann.json", tmp_path / "img")
    assert ds.class_names == ["background", "person", "car", "dog"] and ds.cat_ids == [0, 1, 3, 18]
    m = ds[0][1]["sem_seg"]
    assert m[5, 2] == 1 and m[5, 20] == 2 and m[15, 5] == 0
    assert m[5, 12] == 255  # person and car overlap
    assert (m[:, 28:] == 255).all()  # the crowd region: the last two columns (column-major RLE)
    assert ds[1][1]["sem_seg"][7, 7] == 3
    voc = CocoSegmentation(tmp_path / "ann.json", tmp_path / "img", coco_to_voc=True)
    assert len(voc.class_names) == 21 and voc.class_names[15] == "person"
    m = voc[0][1]["sem_seg"]
    assert m[5, 2] == 15 and m[5, 20] == 7  # person -> 15, car -> 7 in VOC order
    assert voc[1][1]["sem_seg"][7, 7] == 12  # dog
    solo = {"images": data["images"][:1], "categories": data["categories"][1:2],
            "annotations": anns[:1]}  # fmt: skip
    (tmp_path / "solo.json").write_text(json.dumps(solo))
    kept = CocoSegmentation(tmp_path / "solo.json", tmp_path / "img", coco_to_voc=True)
    assert kept.ids == [1]


def test_shapes_masks_through_build_dataset(tmp_path):
    cfg = DatasetConfig(type="shapes", root=str(tmp_path), splits=["val"], num_images=4,
                        image_size=64)  # fmt: skip
    ds = build_dataset(cfg, AugmentConfig(), None, train=False, task="sem_seg")
    assert ds.class_names == ["background", "circle", "square", "triangle", "star", "cross"]
    image, t = ds[0]
    png = np.array(Image.open(ds.label_path(0)))
    assert image.shape == (3, 64, 64) and torch.equal(t["sem_seg"], torch.from_numpy(png).long())
    assert set(t["sem_seg"].unique().tolist()) <= {0, 1, 2, 3, 4, 5, 255}
    train = build_dataset(cfg, AugmentConfig(), (32, 48), train=True, task="sem_seg")
    image, t = train[0]
    assert image.shape == (3, 32, 48) and t["sem_seg"].shape == (32, 48)
    bad = DatasetConfig(type="shapes", root=str(tmp_path), splits=["val"], coco_to_voc=True)
    with pytest.raises(ConfigError, match="coco_to_voc"):
        build_dataset(bad, AugmentConfig(), None, train=False)


def test_scale_crop_flip_keep_masks_nearest_and_pad_with_ignore():
    image = np.zeros((20, 30, 3), np.uint8)
    mask = np.zeros((20, 30), np.uint8)
    mask[:, 15:] = 3
    aug = AugmentConfig(hflip=0.5, scale_range=[0.5, 2.0], crop_size=[40, 40], exposure=1,
                        saturation=1)  # fmt: skip
    t = build_transforms(aug, None, train=True)
    seen_pad = False
    for _ in range(20):
        img, _, _, m = t(image, np.zeros((0, 4)), np.zeros(0), mask)
        assert img.shape == (40, 40, 3) and m.shape == (40, 40)
        assert set(np.unique(m)) <= {0, 3, 255}  # nearest: no blended labels
        seen_pad |= bool((m == 255).any())
    assert seen_pad  # a 20 x 30 image scaled by <= 2 is padded to 40 x 40 at least sometimes
    with pytest.raises(ConfigError, match="two values"):
        build_transforms(AugmentConfig(crop_size=[40]), None, train=True)
