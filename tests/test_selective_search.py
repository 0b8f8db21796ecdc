"""Selective search (recall on flat rectangles, determinism, format) and the proposal cache
(written once and reused, unreadable images, user files, malformed files, proposals moved with
the augmentation)."""

import os
from dataclasses import replace

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from visionkit.config.schema import AugmentConfig, DatasetConfig, ProposalConfig
from visionkit.data import build_dataset
from visionkit.data.proposal_cache import cache_path, load_proposals, save_proposals
from visionkit.errors import DataError, UnreadableImageError
from visionkit.proposals.selective_search import selective_search

RECTS = [(10, 12, 50, 60), (70, 20, 120, 45), (30, 80, 100, 120)]


def rectangles_image() -> np.ndarray:
    """A 128 x 128 grey image with three flat-coloured rectangles (xyxy, exclusive edges)."""
    image = np.full((128, 128, 3), 128, np.uint8)
    for (x1, y1, x2, y2), colour in zip(
        RECTS, [(220, 30, 30), (30, 200, 40), (20, 40, 210)], strict=True
    ):
        image[y1:y2, x1:x2] = colour
    return image


@pytest.mark.parametrize("mode", ["single", "fast"])
def test_recovers_flat_rectangles(mode):
    boxes = selective_search(rectangles_image(), mode)
    iou = box_iou(torch.tensor(RECTS, dtype=torch.float32), torch.from_numpy(boxes))
    assert (iou.max(1).values > 0.9).all()


def test_format_and_determinism():
    rng = np.random.default_rng(0)
    image = rectangles_image()
    image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
    boxes = selective_search(image, "fast")
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    assert len(boxes) > 10
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert boxes.min() >= 0 and boxes[:, [2, 3]].max() <= 128
    assert len(np.unique(boxes, axis=0)) == len(boxes)
    assert [0.0, 0.0, 128.0, 128.0] in boxes.tolist()  # the hierarchy's root
    np.testing.assert_array_equal(boxes, selective_search(image, "fast"))
    assert not np.array_equal(boxes, selective_search(image, "fast", seed=1))  # ranking only
    assert {tuple(b) for b in boxes} == {tuple(b) for b in selective_search(image, "fast", seed=1)}


def test_rejects_bad_images():
    with pytest.raises(DataError, match="uint8 RGB"):
        selective_search(np.zeros((32, 32), np.uint8))
    with pytest.raises(DataError, match="uint8 RGB"):
        selective_search(np.zeros((32, 32, 3), np.float32))


def shapes_cfg(tmp_path, **proposals) -> DatasetConfig:
    p = ProposalConfig(method="selective_search", mode="single", cache_dir=str(tmp_path / "p"))
    return DatasetConfig(
        root=str(tmp_path), splits=["val"], num_images=3, image_size=64,
        proposals=replace(p, **proposals),
    )  # fmt: skip


def test_cache_written_once_and_reused(tmp_path):
    cfg = shapes_cfg(tmp_path)
    dataset = build_dataset(cfg, AugmentConfig(), None, train=False)
    path = cache_path(dataset.dataset, cfg.proposals)
    assert path.is_file() and path.parent == tmp_path / "p"
    assert not [f for f in path.parent.iterdir() if f.name.startswith(".")]  # no temporary left
    stamp = path.stat().st_mtime_ns
    os.utime(path, ns=(stamp - 10**9, stamp - 10**9))
    again = build_dataset(cfg, AugmentConfig(), None, train=False)
    assert path.stat().st_mtime_ns == stamp - 10**9  # read, not rewritten
    image, target = again[0]
    assert target["proposals"].dtype == torch.float32 and target["proposals"].shape[1] == 4
    assert len(target["proposals"]) > 0
    expected = load_proposals(path)[target["image_id"]]
    torch.testing.assert_close(target["proposals"], torch.from_numpy(expected))
    assert target["boxes"].shape[1] == 4 and len(target["labels"]) == len(target["boxes"])
    assert again.coco is again.dataset.coco and again.class_names == dataset.class_names


def test_unreadable_image_left_out_of_the_cache_then_searched_again(tmp_path, capsys):
    cfg = shapes_cfg(tmp_path)
    plain = build_dataset(replace(cfg, proposals=ProposalConfig()), AugmentConfig(), None, False)
    bad = plain.image_path(1)
    good_bytes = bad.read_bytes()
    bad.write_bytes(b"not an image")
    with pytest.raises(UnreadableImageError, match=f"{bad.name}.*data.on_bad_image=skip"):
        build_dataset(cfg, AugmentConfig(), None, train=False, on_bad_image="stop")
    path = cache_path(plain, cfg.proposals)
    cached = load_proposals(path)  # the readable images' proposals were kept
    assert sorted(cached) == sorted(plain.ids[i] for i in (0, 2))
    build_dataset(cfg, AugmentConfig(), None, train=False)  # skip
    assert f"warning: no proposals: cannot read image {bad}" in capsys.readouterr().err
    assert load_proposals(path).keys() == cached.keys()
    bad.write_bytes(good_bytes)  # fixed: the next run searches just that image and adds it
    again = build_dataset(cfg, AugmentConfig(), None, train=False)
    completed = load_proposals(path)
    assert sorted(completed) == sorted(plain.ids)
    for image_id in cached:
        np.testing.assert_array_equal(completed[image_id], cached[image_id])
    assert len(again[1][1]["proposals"]) > 0


def test_proposals_follow_the_training_transform(tmp_path):
    cfg = shapes_cfg(tmp_path, max_proposals=5)
    plain = build_dataset(cfg, AugmentConfig(), None, train=False)
    aug = AugmentConfig(hflip=1.0, scale=0.0, translate=0.0, exposure=1.0, saturation=1.0)
    flipped = build_dataset(cfg, aug, (32, 32), train=True)
    (_, t0), (image, t1) = plain[0], flipped[0]
    assert image.shape == (3, 32, 32) and len(t0["proposals"]) == 5
    p = t0["proposals"]
    expected = torch.stack([64 - p[:, 2], p[:, 1], 64 - p[:, 0], p[:, 3]], 1) / 2
    torch.testing.assert_close(t1["proposals"], expected)
    assert (t1["labels"] >= 0).all() and len(t1["labels"]) == len(t0["labels"])


def test_user_files_npz_and_pt(tmp_path):
    boxes = {1: np.array([[0, 0, 10, 10], [5, 5, 20, 30]], np.float32), 2: np.zeros((0, 4))}
    save_proposals(tmp_path / "a.npz", boxes)
    torch.save({k: torch.from_numpy(v) for k, v in boxes.items()}, tmp_path / "a.pt")
    for name in ("a.npz", "a.pt"):
        loaded = load_proposals(tmp_path / name)
        assert set(loaded) == {1, 2} and loaded[2].shape == (0, 4)
        np.testing.assert_array_equal(loaded[1], boxes[1])
    cfg = shapes_cfg(tmp_path, method="file", file=str(tmp_path / "user.npz"))
    ids = build_dataset(replace(cfg, proposals=ProposalConfig()), AugmentConfig(), None, False).ids
    save_proposals(cfg.proposals.file, {i: np.array([[1, 2, 30, 40]]) for i in ids})
    dataset = build_dataset(cfg, AugmentConfig(), None, train=False)
    assert dataset[0][1]["proposals"].tolist() == [[1.0, 2.0, 30.0, 40.0]]
    save_proposals(cfg.proposals.file, {ids[0]: np.array([[1, 2, 30, 40]])})
    with pytest.raises(DataError, match=f"no entry for 2 of the dataset's 3 images .*{ids[1]}"):
        build_dataset(cfg, AugmentConfig(), None, train=False)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"7": np.zeros((3, 5))}, r"image '7' holds \(3, 5\) values"),
        ({"x": np.zeros((3, 4))}, "entry 'x' is not an image id"),
        ({"7": np.array([[0, 0, np.nan, 4]])}, "not finite"),
        (b"not a zip file", "cannot read proposals file"),
        ([1, 2], "holds a list, not a dict"),
    ],
)
def test_malformed_files_are_one_line_data_errors(tmp_path, content, message):
    if isinstance(content, bytes):
        path = tmp_path / "bad.npz"
        path.write_bytes(content)
    elif isinstance(content, list):
        path = tmp_path / "bad.pt"
        torch.save(content, path)
    else:
        path = tmp_path / "bad.npz"
        np.savez(path, **content)
    with pytest.raises(DataError, match=message) as err:
        load_proposals(path)
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="not found"):
        load_proposals(tmp_path / "missing.npz")
