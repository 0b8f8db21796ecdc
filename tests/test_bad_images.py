"""Unreadable images inside a dataset (data.on_bad_image): skipped and reported, or a stop."""

from pathlib import Path

import pytest

from visionkit.config import AugmentConfig, DatasetConfig
from visionkit.data import build_dataloader, build_dataset
from visionkit.errors import DataError, UnreadableImageError

NUM_IMAGES, TRUNCATED, DELETED = 8, 2, 5


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> tuple[DatasetConfig, list[int], list[Path]]:
    """8 tiny shapes images; the 3rd cut in half (a truncated JPEG), the 6th deleted. Returns
    the config, every image id in dataset order and the two damaged files."""
    root = tmp_path_factory.mktemp("shapes")
    cfg = DatasetConfig(type="shapes", root=str(root), num_images=NUM_IMAGES, image_size=48)
    ds = build_dataset(cfg, AugmentConfig(), (32, 32), train=False)
    truncated, deleted = ds.image_path(TRUNCATED), ds.image_path(DELETED)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    deleted.unlink()
    return cfg, list(ds.ids), [truncated, deleted]


def passes(loader, epochs: int) -> list[list[int]]:
    return [[t["image_id"] for _, ts in loader for t in ts] for _ in range(epochs)]


@pytest.mark.parametrize("workers", [0, 1])
def test_skip_replaces_in_training_leaves_out_in_evaluation_and_warns_once(
    damaged, workers, capsys
):
    cfg, ids, bad = damaged
    good = [i for k, i in enumerate(ids) if k not in (TRUNCATED, DELETED)]
    train_set = build_dataset(cfg, AugmentConfig(), (32, 32), train=True)
    loader = build_dataloader(train_set, 3, workers, shuffle=False)
    # training: every index gives a sample, an unreadable one the next readable one's (same
    # batch sizes: 3, 3, 2); two passes, each file reported once
    expected = list(ids)
    expected[TRUNCATED], expected[DELETED] = ids[TRUNCATED + 1], ids[DELETED + 1]
    assert passes(loader, 2) == [expected, expected]
    assert sorted(set(expected)) == sorted(good) and len(good) == NUM_IMAGES - 2
    assert list(loader.skipped) == [str(p) for p in bad]
    assert "truncated JPEG" in loader.skipped[str(bad[0])]
    assert loader.skipped[str(bad[1])].endswith(": missing")
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 2 and all(p.name in w for p, w in zip(bad, warnings, strict=True))
    assert "(2 so far)" in warnings[1]
    # evaluation: each readable image exactly once, the unreadable ones left out
    val_set = build_dataset(cfg, AugmentConfig(), None, train=False)
    loader = build_dataloader(val_set, 3, workers, shuffle=False)
    assert passes(loader, 1) == [good]
    assert list(loader.skipped) == [str(p) for p in bad]
    batch = next(iter(loader))[1]
    assert all("skipped" not in t and "stand_in" not in t for t in batch)


def test_stop_raises_one_line_naming_the_file(damaged):
    cfg, _, bad = damaged
    ds = build_dataset(cfg, AugmentConfig(), None, train=True, on_bad_image="stop")
    with pytest.raises(UnreadableImageError, match="truncated JPEG") as e:
        ds[TRUNCATED]
    assert e.value.path == str(bad[0]) and "\n" not in str(e.value)
    assert "data.on_bad_image=skip" in str(e.value)
    with pytest.raises(UnreadableImageError, match=f"{bad[1].name}: missing"):
        ds[DELETED]
    assert ds[0][1]["image_id"] == ds.ids[0]


def test_skipping_gives_up_on_a_dataset_of_unreadable_files(tmp_path):
    cfg = DatasetConfig(type="shapes", root=str(tmp_path), num_images=3, image_size=48)
    ds = build_dataset(cfg, AugmentConfig(), None, train=True)
    for i in range(len(ds)):
        ds.image_path(i).unlink()
    with pytest.raises(DataError, match="3 unreadable files in a row from sample 1"):
        ds[1]


def test_segmentation_label_maps_are_skipped_too(tmp_path):
    cfg = DatasetConfig(type="shapes", root=str(tmp_path), num_images=4, image_size=48)
    ds = build_dataset(cfg, AugmentConfig(), None, train=False, task="sem_seg")
    label = ds.label_path(0)
    label.write_bytes(b"not a png")
    loader = build_dataloader(ds, 4, 0, shuffle=False)
    assert passes(loader, 1) == [ds.ids[1:]]
    assert "cannot read label map" in loader.skipped[str(label)]
