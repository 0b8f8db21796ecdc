"""README.md runs as written: every command block, top to bottom, in one temporary folder.

Each ``bash`` block's commands run in order through the shell, each ``python`` block as a
script, and each ``text`` block that shows a ``$ command`` runs it and must print the lines shown
(``...`` stands for lines left out). The documented commands are shortened only by overrides
appended to them (:func:`shortened`: tiny images, one epoch, a small input size; before a flag
that takes several values), so a README that
names a file no earlier step makes, or a flag a job does not take, fails here. The placeholders the
text names as such (``photos/``, ``photo.jpg``, ``clip.mp4``, ``street.jpg``) and the data the
"real data" commands read (``data/coco``, ``data/VOCdevkit``, torchvision's weights under
``$TORCH_HOME``) are made by the test, small, before the first command. The setup block (install,
test) is what CI itself runs: it must equal ``.ci/run``'s commands.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)

# the embedded shapes dataset and the models, small
SHAPES_DATA = [
    "data.train.num_images=16",
    "data.val.num_images=8",
    "data.train.image_size=96",
    "data.val.image_size=96",
    "data.num_workers=0",
]
TINY_MODEL = {
    "yolo_v1": ["model.input_size=[64,64]"],
    "faster_rcnn": ["model.resize.min_size=96", "model.resize.max_size=96"],
    "mask_rcnn": ["model.resize.min_size=96", "model.resize.max_size=96"],
    "fcn": ["model.input_size=[64,64]"],
}
TINY_TRAIN = ["train.epochs=1", "data.batch_size=4", "eval.batch_size=4"]
# torchvision's 800 px models, at a size a CPU runs in seconds
SMALL_TORCHVISION = ["model.resize.min_size=96", "model.resize.max_size=160", "data.num_workers=0"]
PACKAGED = {p.stem for p in (ROOT / "visionkit" / "configs").glob("*.yaml")}


@dataclass
class Block:
    """A fenced block of README.md: its language, its text, the line it starts on."""

    lang: str
    text: str
    line: int


def blocks(text: str) -> list[Block]:
    """Every fenced block, in order."""
    return [
        Block(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1)
        for m in FENCE.finditer(text)
    ]


def commands(block: str) -> list[str]:
    """A bash block's commands: continuation lines joined, blank and comment lines left out."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [
        ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.strip().startswith("#")
    ]


def model_of(config: str) -> str:
    """The packaged config's model name (``yolo_v1_shapes`` -> ``yolo_v1``)."""
    from visionkit.config import load_config

    return load_config(config).model.name


def shortened(command: str) -> str:
    """``command`` with the overrides that make it small appended (never anything removed)."""
    words = shlex.split(command, comments=True)
    if not words or words[0] != "visionkit":
        return command
    job, rest = words[1], words[2:]
    positional = [w for w in rest if not w.startswith("-") and "=" not in w]
    flags = dict(zip(rest, rest[1:], strict=False))
    config = flags.get("--config") or (positional[0] if positional else "")
    extra: list[str] = []
    own_data = any(w.startswith(("data.train.type=", "data.val.type=")) for w in rest)
    weights = next(
        (w for w in [*positional, flags.get("--weights", "")] if "torchvision:" in w), ""
    )
    if weights or "--init-from" in flags and "torchvision:" in flags["--init-from"]:
        extra += SMALL_TORCHVISION
    elif (
        config in PACKAGED
        and config.endswith("_shapes")
        and job != "eval"
        or (job == "eval" and "--predictions" in flags)
    ):
        extra += ["data.num_workers=0"] if own_data else SHAPES_DATA
        extra += TINY_MODEL.get(model_of(config), []) if job in ("train", "visualize") else []
    elif config in PACKAGED:  # a paper setup on the stand-in VOC or COCO data
        extra += ["model.input_size=[64,64]"] if model_of(config) == "yolo_v1" else []
        extra += SMALL_TORCHVISION if model_of(config) in ("faster_rcnn", "mask_rcnn") else []
        extra += ["data.num_workers=0"]
    if job == "train":
        extra += TINY_TRAIN + (["train.milestones=[]"] if "train.milestones=[4]" in rest else [])
    if job == "convert":
        extra += ["--no-progress"]
    added = "".join(f" {shlex.quote(w)}" for w in extra)
    if " --layers " in command:  # a flag of several values: the overrides go before it
        head, tail = command.split(" --layers ", 1)
        return f"{head}{added} --layers {tail}"
    return command + added


def write_placeholders(work: Path) -> None:
    """``photos/`` (three images), ``photo.jpg``, ``street.jpg`` and ``clip.mp4`` (six frames)."""
    rng = np.random.default_rng(0)

    def image(h: int, w: int) -> np.ndarray:
        img = np.full((h, w, 3), 200, np.uint8)
        x, y = int(rng.integers(5, w // 2)), int(rng.integers(5, h // 2))
        cv2.rectangle(img, (x, y), (x + w // 3, y + h // 3), (30, 60, 220), -1)
        cv2.circle(img, (w - w // 4, h - h // 4), h // 6, (40, 200, 40), -1)
        return img

    (work / "photos").mkdir()
    for i in range(3):
        cv2.imwrite(str(work / "photos" / f"p{i}.jpg"), image(96, 128))
    cv2.imwrite(str(work / "photo.jpg"), image(120, 160))
    cv2.imwrite(str(work / "street.jpg"), image(240, 320))
    video = cv2.VideoWriter(str(work / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, (128, 96))
    for _ in range(6):
        video.write(image(96, 128))
    video.release()


def write_coco(work: Path) -> None:
    """``data/coco/{train2017,val2017,annotations}``: small shapes splits in COCO format under
    COCO's 80 categories (ids 1..90 with gaps), the shapes' ids 1..5 read as COCO's person,
    bicycle, car, motorcycle and airplane."""
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    from visionkit.data import ensure_shapes

    names = FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]  # index = COCO id
    categories = [
        {"id": i, "name": n} for i, n in enumerate(names) if n not in ("__background__", "N/A")
    ]
    for split, coco in (("train", "train2017"), ("val", "val2017")):
        files = ensure_shapes(work / "shapes", split, num_images=4, image_size=96)
        shutil.copytree(files["images"], work / "data" / "coco" / coco)
        ann = work / "data" / "coco" / "annotations" / f"instances_{coco}.json"
        ann.parent.mkdir(parents=True, exist_ok=True)
        data = json.loads(Path(files["ann_file"]).read_text())
        ann.write_text(json.dumps({**data, "categories": categories}))


def write_voc(work: Path) -> None:
    """``data/VOCdevkit/VOC2007`` and ``VOC2012``: two images each with a person and a car,
    in the trainval and test lists."""
    for year in ("2007", "2012"):
        root = work / "data" / "VOCdevkit" / f"VOC{year}"
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
            (root / sub).mkdir(parents=True)
        names = [f"{year}_{i}" for i in range(2)]
        for i, name in enumerate(names):
            img = np.full((96, 128, 3), 180, np.uint8)
            cv2.rectangle(img, (10 + i, 10), (50, 80), (0, 0, 200), -1)
            cv2.rectangle(img, (60, 30), (120, 70), (200, 0, 0), -1)
            cv2.imwrite(str(root / "JPEGImages" / f"{name}.jpg"), img)
            ann = ET.Element("annotation")
            size = ET.SubElement(ann, "size")
            for k, v in (("width", 128), ("height", 96), ("depth", 3)):
                ET.SubElement(size, k).text = str(v)
            for cls, box in (("person", (11 + i, 11, 51, 81)), ("car", (61, 31, 121, 71))):
                obj = ET.SubElement(ann, "object")
                ET.SubElement(obj, "name").text = cls
                ET.SubElement(obj, "difficult").text = "0"
                bnd = ET.SubElement(obj, "bndbox")
                for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True):
                    ET.SubElement(bnd, k).text = str(v)
            ET.ElementTree(ann).write(root / "Annotations" / f"{name}.xml")
        for split in ("trainval", "test"):
            (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(names) + "\n")


def write_torchvision_weights(torch_home: Path) -> None:
    """Randomly initialized torchvision models under the file names torchvision downloads them
    to: the COCO Faster R-CNN, Mask R-CNN and FCN, and the ImageNet ResNet-50 the paper setups
    start from."""
    import torchvision
    from test_mask_rcnn import torchvision_mask_rcnn
    from test_torchvision_weights import torchvision_faster_rcnn

    from visionkit.checkpoints.torchvision import weights_url

    hub = torch_home / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.manual_seed(0)
    _, name = weights_url("fasterrcnn_resnet50_fpn")
    torch.save(torchvision_faster_rcnn().state_dict(), hub / name)
    _, name = weights_url("maskrcnn_resnet50_fpn")
    torch.save(torchvision_mask_rcnn().state_dict(), hub / name)
    _, name = weights_url("fcn_resnet50")
    fcn = torchvision.models.segmentation.fcn_resnet50(
        weights=None, weights_backbone=None, num_classes=21, aux_loss=True
    )
    torch.save(fcn.state_dict(), hub / name)
    url = torchvision.models.get_weight("ResNet50_Weights.DEFAULT").url
    torch.save(torchvision.models.resnet50().state_dict(), hub / url.rsplit("/", 1)[1])


def environment(tmp_path: Path) -> dict[str, str]:
    """The commands' environment: caches in the temporary folder, no network, and a
    ``visionkit`` on PATH that runs this checkout (``python -m visionkit``)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "visionkit"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m visionkit "$@"\n')
    shim.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "VISIONKIT_CACHE": str(tmp_path / "cache"),
        "TORCH_HOME": str(tmp_path / "torch"),
        "MPLBACKEND": "Agg",
        "PYTHONPATH": str(ROOT),
    }
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        env[var] = "http://127.0.0.1:9"  # no downloads: every request fails at once
    return env


def run(args: list[str], work: Path, env: dict[str, str], what: str) -> str:
    proc = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (
        f"README {what} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


def test_the_setup_block_is_what_ci_runs():
    """The install and test commands are .ci/run's own (``pip`` or ``python -m pip``)."""
    ci = {
        ln.strip().removeprefix("python -m ")
        for ln in (ROOT / ".ci" / "run").read_text().splitlines()
    }
    setup = commands(blocks(README.read_text())[0].text)
    assert len(setup) == 2
    for command in setup:
        assert command.split(" #")[0].strip().removeprefix("python -m ") in ci, command


def test_a_missing_step_fails_the_next(tmp_path):
    """Without the first ``visionkit train``, the command after it has no run to read: a one-line
    error and a non-zero exit, which fails the README test."""
    first = commands(blocks(README.read_text())[1].text)
    assert first[0] == "visionkit train yolo_v1_shapes" and first[1].startswith("visionkit eval")
    env = environment(tmp_path)
    proc = subprocess.run(["bash", "-c", shortened(first[1])], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.startswith("error: "), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_every_command_block_runs_in_order(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    write_placeholders(work)
    write_coco(work)
    write_voc(work)
    write_torchvision_weights(tmp_path / "torch")
    env = environment(tmp_path)
    ran = 0
    for block in blocks(README.read_text())[1:]:
        where = f"line {block.line}"
        if block.lang == "bash":
            for command in commands(block.text):
                run(["bash", "-c", shortened(command)], work, env, f"{where}: {command}")
                ran += 1
        elif block.lang == "python":
            script = tmp_path / f"readme_{block.line}.py"
            script.write_text(block.text)
            run([sys.executable, str(script)], work, env, f"python block at {where}")
            ran += 1
        elif block.lang == "text" and block.text.startswith("$ "):
            command, *shown = block.text.splitlines()
            out = run(["bash", "-c", shortened(command[2:])], work, env, f"{where}: {command}")
            printed = {ln.rstrip() for ln in out.splitlines()}
            missing = [ln for ln in shown if ln.strip() != "..." and ln.rstrip() not in printed]
            assert not missing, f"README {where}: {command} did not print {missing}"
            ran += 1
    assert ran >= 30, f"only {ran} README commands found"
