"""Fuzz: what predict is given. infer.py on hostile image files, source strings, score
thresholds and output folders; the Python API on arrays and tensors of random dtype, shape and
range, PIL images of every mode and size (0x0 included), and Result.save/to_coco. Each example:
exit 0/1/2/3 (the API: a result or a VisionkitError), no traceback, no input changed, nothing
half-written, within the bound; refusals where the issue says an input is an error."""

from __future__ import annotations

import io
import math
import struct
import zlib

import numpy as np
import pytest
import torch
from fuzz_assets import session_assets
from fuzz_support import case, check, fuzz_settings, invoke, refused, run_tool
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image

import visionkit


@pytest.fixture(scope="module")
def assets():
    return session_assets()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_inputs")


@pytest.fixture(scope="module")
def model(assets):
    return visionkit.load(assets.checkpoint, score_thresh=0.0)


def png_bomb(width: int, height: int) -> bytes:
    """A PNG header announcing ``width`` x ``height`` RGB with a few bytes of data."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


MODES = ["1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "I", "F", "I;16", "LA", "PA", "LAB"]
FORMATS = ["PNG", "JPEG", "BMP", "TIFF", "GIF", "WEBP"]
image_files = st.one_of(
    st.tuples(st.just("garbage"), st.binary(max_size=120)),
    st.tuples(st.just("truncated"), st.floats(0, 1)),
    st.tuples(st.just("bomb"), st.sampled_from([(60_000, 60_000), (1, 10**7), (0, 5)])),
    st.tuples(
        st.just("pil"),
        st.tuples(
            st.sampled_from(MODES), st.integers(1, 70), st.integers(1, 70), st.sampled_from(FORMATS)
        ),
    ),
)
EXTS = [".jpg", ".png", ".JPG", ".bmp", ".tif", ".webp", ".gif", ".mp4", ".txt"]


def image_bytes(kind, good: bytes) -> bytes:
    name, arg = kind
    if name == "garbage":
        return arg
    if name == "truncated":
        return good[: int(len(good) * arg)]
    if name == "bomb":
        return png_bomb(*arg)
    mode, w, h, fmt = arg
    rng = np.random.default_rng(w * 100 + h)
    im = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    try:
        im.save(buf, fmt)
    except (OSError, ValueError, KeyError):
        buf = io.BytesIO()
        im.convert("RGB").save(buf, "PNG")
    return buf.getvalue()


SOURCES = ["folder", "glob", "list", "file", "2024", "missing", "empty_folder"]
OUTPUTS = ["out/infer", "earlier", "in", "in/photos", "in/user.txt", "/proc/vk_fuzz"]


@fuzz_settings()
@given(
    files=st.lists(st.tuples(image_files, st.sampled_from(EXTS)), min_size=1, max_size=3),
    source=st.sampled_from(SOURCES),
    thresh=st.sampled_from(["0.3", "nan", "-1", "2", "inf", "0", "1"]),
    output=st.sampled_from(OUTPUTS),
    batch=st.sampled_from(["1", "8", "0", "100000"]),
)
@example(files=[(("pil", ("RGB", 8, 8, "JPEG")), ".jpg")], source="2024", thresh="0.3",
         output="out/infer", batch="8")  # fmt: skip
@example(files=[(("pil", ("RGB", 8, 8, "JPEG")), ".jpg")], source="folder", thresh="nan",
         output="out/infer", batch="8")  # fmt: skip
@example(files=[(("pil", ("RGB", 8, 8, "JPEG")), ".jpg")], source="folder", thresh="0.3",
         output="in", batch="8")  # fmt: skip
@example(files=[(("pil", ("RGB", 8, 8, "JPEG")), ".jpg")], source="folder", thresh="0.3",
         output="earlier", batch="8")  # fmt: skip
@example(files=[(("truncated", 0.5), ".jpg")], source="folder", thresh="0.3",
         output="out/infer", batch="8")  # fmt: skip
@example(files=[(("bomb", (60_000, 60_000)), ".png")], source="folder", thresh="0.3",
         output="out/infer", batch="8")  # fmt: skip
@example(files=[(("pil", ("I;16", 8, 8, "PNG")), ".png")], source="file", thresh="0.3",
         output="out/infer", batch="8")  # fmt: skip
def test_infer_hostile_sources(base, assets, files, source, thresh, output, batch):
    good = (assets.images / "img0.jpg").read_bytes()
    with case(base, assets) as c:
        photos = c.inp / ("2024" if source == "2024" else "photos")
        photos.mkdir()
        names = []
        for k, (kind, ext) in enumerate(files):
            names.append(photos / f"photo{k}{ext}")
            names[-1].write_bytes(image_bytes(kind, good))
        (c.inp / "photo0.jpg").write_bytes(good)  # the user's own files beside the sources
        (c.inp / "predictions.json").write_text("[]")
        (c.inp / "user.txt").write_text("mine\n")
        (c.inp / "list.txt").write_text("".join(f"{p}\n" for p in names) + "nope.jpg\n")
        (c.inp / "empty").mkdir()
        spec = {
            "folder": photos,
            "glob": f"{photos}/*",
            "list": c.inp / "list.txt",
            "2024": "2024",
            "file": names[0],
            "missing": c.inp / "missing.jpg",
            "empty_folder": c.inp / "empty",
        }
        out = c.root / output if output != "earlier" else c.out / "infer"
        if output == "earlier":  # an earlier result there: never mixed, never overwritten
            out.mkdir()
            (out / "predictions.json").write_text('[{"image_id": 1}]')
            (out / "images.json").write_text('{"images": []}')
            c.kept += [out / "predictions.json", out / "images.json"]
        argv = ["--weights", assets.checkpoint, "--source", spec[source], "--output", out,
                "--score-thresh", thresh, "--batch-size", batch, "--no-progress"]  # fmt: skip

        def expect(outcome):
            value = float(thresh)
            if not math.isfinite(value) or not 0 <= value <= 1:
                return refused(outcome)
            if source == "2024" and "webcam" in outcome.stdout + outcome.stderr:
                return "the folder ./2024 was taken as a webcam index"
            return None

        detail = f"files {files!r}, source {source}, --score-thresh {thresh}, --output {output}"
        check(c, lambda: run_tool("infer", argv, c.inp), expect, detail)


DTYPES = ["uint8", "uint16", "int8", "int32", "int64", "float16", "float32", "float64", "bool"]
RANGES = [(0, 1), (0, 255), (-1, 2), (0, 65535), (-1e30, 1e30)]
arrays = st.fixed_dictionaries({
    "dtype": st.sampled_from(DTYPES),
    "shape": st.sampled_from([(16, 16, 3), (16, 16), (3, 16, 16), (0, 16, 3), (16, 0, 3),
                              (1, 1, 3), (16, 16, 4), (16, 16, 1), (2, 16, 16, 3), (5,), ()]),
    "range": st.sampled_from(RANGES),
    "nan": st.booleans(),
    "tensor": st.booleans(),
    "seed": st.integers(0, 1000),
})  # fmt: skip


def make_array(spec: dict):
    rng = np.random.default_rng(spec["seed"])
    lo, hi = spec["range"]
    values = rng.uniform(lo, hi, spec["shape"])
    kind = np.dtype(spec["dtype"])
    if kind.kind == "f" and spec["nan"] and values.size:
        values.flat[0] = np.nan
    if kind.kind in "iu":
        info = np.iinfo(kind)
        values = np.clip(values, info.min, info.max)
    array = np.asarray(values).astype(kind)  # a 0-d array, not a NumPy scalar, for shape ()
    if spec["tensor"] and spec["dtype"] != "uint16":
        return torch.from_numpy(array)
    return array


def float_rule(spec: dict, outcome) -> str | None:
    """Float pixels must be finite and in [0, 1]; anything else is refused."""
    if np.dtype(spec["dtype"]).kind != "f" or 0 in spec["shape"] or spec["shape"] == ():
        return None
    if spec["nan"] or spec["range"] != (0, 1):
        return refused(outcome)
    return None


@fuzz_settings()
@given(spec=arrays)
@example(spec={"dtype": "float32", "shape": (3, 16, 16), "range": (0, 255), "nan": False,
               "tensor": True, "seed": 0})  # fmt: skip
@example(spec={"dtype": "float32", "shape": (16, 16, 3), "range": (0, 1), "nan": True,
               "tensor": False, "seed": 0})  # fmt: skip
@example(spec={"dtype": "uint8", "shape": (0, 16, 3), "range": (0, 255), "nan": False,
               "tensor": False, "seed": 0})  # fmt: skip
def test_predict_hostile_arrays(base, assets, model, spec):
    data = make_array(spec)
    with case(base, assets) as c:
        run = lambda: invoke(f"predict({spec})", lambda: model.predict(data), c.root)  # noqa: E731
        check(c, run, lambda o: float_rule(spec, o), f"array {spec}")


@fuzz_settings()
@given(mode=st.sampled_from(MODES), w=st.integers(0, 40), h=st.integers(0, 40))
@example(mode="I;16", w=16, h=16)
@example(mode="RGB", w=0, h=0)
@example(mode="F", w=16, h=16)
@example(mode="CMYK", w=16, h=16)
def test_predict_pil_images_like_their_files(base, assets, model, mode, w, h):
    rng = np.random.default_rng(w * 41 + h)
    rgb = Image.fromarray(rng.integers(0, 255, (max(h, 1), max(w, 1), 3), dtype=np.uint8))
    image = rgb.convert(mode).resize((w, h)) if w and h else Image.new(mode, (w, h))
    with case(base, assets) as c:
        got: dict = {}

        def run():
            got["pil"] = model.predict(image)
            if w and h:  # the same image read by path (TIFF: lossless for every mode)
                path = c.out / "same.tif"
                image.save(path)
                got["file"] = model.predict(path)
            return 0

        def same_as_file(outcome):
            if not (w and h):
                return refused(outcome)
            if outcome.code == 0 and "file" in got:
                if mode in ("I", "F") and len(got["pil"]) == 1 and not got["file"]:
                    # OpenCV cannot read some 32-bit TIFFs by path (the file is skipped); the PIL
                    # image follows its mode's own rule (tests/test_predict_inputs.py)
                    return None
                if len(got["pil"]) != 1 or len(got["file"]) != 1:
                    return (
                        f"mode {mode}: {len(got['pil'])} results (PIL), {len(got['file'])} (file)"
                    )
                a, b = got["pil"][0], got["file"][0]
                if not np.array_equal(a.image, b.image):
                    return f"mode {mode}: the PIL image is seen unlike the same file read by path"
            return None

        check(c, lambda: invoke(f"predict(PIL {mode} {w}x{h})", run, c.root), same_as_file,
              f"PIL {mode} {w}x{h}")  # fmt: skip


SAVE_PATHS = ["out/r.jpg", "out/r.png", "out", "out/r.txt", "/proc/vk_fuzz.png", "out/a/b/r.png",
              "out/r", "in/img.jpg", "out/\x00.png"]  # fmt: skip


@fuzz_settings()
@given(path=st.sampled_from(SAVE_PATHS), image_id=st.sampled_from([1, -1, 0, 2**70, "x", None]))
@example(path="out", image_id=1)
@example(path="/proc/vk_fuzz.png", image_id=1)
@example(path="out/\x00.png", image_id=1)
def test_result_save_and_to_coco(base, assets, model, path, image_id):
    with case(base, assets) as c:
        (c.inp / "img.jpg").write_bytes((assets.images / "img0.jpg").read_bytes())

        def run():
            (result,) = model.predict(c.inp / "img.jpg")
            result.to_coco(image_id)
            result.save(c.root / path if not path.startswith("/") else path)
            return 0

        check(c, lambda: invoke(f"Result.save({path!r}), to_coco({image_id!r})", run, c.root))
