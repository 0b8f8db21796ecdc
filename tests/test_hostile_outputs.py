"""Nothing of the user's is overwritten by tools/infer.py: not the source photos, not a previous
run's predictions when every source of a rerun into the same folder (--exist-ok) is unreadable.
Every tool and input role: tests/test_output_rule.py."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_tools_e2e import run_tool, tiny_overrides

from visionkit.config import load_config
from visionkit.models import build_model

ROOT = Path(__file__).resolve().parents[1]
YOLO = str(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml")


@pytest.fixture
def weights(tmp_path):
    cfg = load_config(YOLO, tiny_overrides(tmp_path / "cache"))
    path = tmp_path / "w.pth"
    torch.save(build_model(cfg.model).state_dict(), path)
    return path


def infer(tmp_path, weights, source, output, *extra, check=False):
    return run_tool("infer.py", "--config", YOLO, "--weights", str(weights), "--source",
                    str(source), "--output", str(output), "--no-progress", *extra,
                    *tiny_overrides(tmp_path / "cache"), check=check)  # fmt: skip


@pytest.mark.slow
def test_output_in_the_source_folder_or_a_file_is_refused(tmp_path, weights):
    photos = tmp_path / "photos"
    photos.mkdir()
    original = np.full((40, 50, 3), 90, np.uint8)
    cv2.imwrite(str(photos / "a.jpg"), original)
    before = (photos / "a.jpg").read_bytes()
    for source in (photos, photos / "a.jpg"):
        proc = infer(tmp_path, weights, source, photos)
        assert proc.returncode == 2 and proc.stderr == (
            f"error: --output {photos} holds --source {photos / 'a.jpg'}: the outputs could "
            "write over it; choose another folder\n"
        )
    assert (photos / "a.jpg").read_bytes() == before and sorted(photos.iterdir()) == [
        photos / "a.jpg"
    ]
    (tmp_path / "file").write_text("x")
    proc = infer(tmp_path, weights, photos, tmp_path / "file")
    assert proc.returncode == 2 and "is a file; give a folder" in proc.stderr


@pytest.mark.slow
def test_a_rerun_with_only_unreadable_sources_keeps_the_previous_predictions(tmp_path, weights):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.jpg"), np.full((40, 50, 3), 90, np.uint8))
    out = tmp_path / "out"
    infer(tmp_path, weights, photos, out, check=True)
    kept = {n: (out / n).read_text() for n in ("predictions.json", "images.json")}
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "b.jpg").write_bytes(b"not a jpeg")
    proc = infer(tmp_path, weights, broken, out, "--exist-ok")
    assert proc.returncode == 3 and "skipped:" in proc.stderr
    assert {n: (out / n).read_text() for n in kept} == kept
