"""predict's inputs are checked, not guessed: PIL images of every mode give the pixels of the same
image saved to a file and read by path; arrays and tensors are uint8 (0..255) or float in [0, 1],
anything else (NaN, 0..255 floats, empty, other shapes or dtypes) a one-line error; a source
string naming a file or folder is never a webcam; score thresholds and batch sizes are checked."""

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from script_loader import load_script
from test_tools_e2e import ROOT

import visionkit
from visionkit.config import load_config
from visionkit.errors import ConfigError, DataError, VisionkitError
from visionkit.inference.api import VisionModel
from visionkit.inference.options import MAX_BATCH
from visionkit.inference.predictor import Predictor
from visionkit.inference.sources import read_frames, resolve_sources
from visionkit.io.image import read_image
from visionkit.models import build_model

TINY = [
    "model.backbone.name=lenet",
    "model.backbone.out_features=[]",
    "model.input_size=[64,64]",
    "model.yolo.grid_size=4",
    "model.yolo.extra_convs=1",
]
# the PIL modes no PNG or TIFF file that OpenCV reads can hold, and how each is read instead
NO_FILE = {"F", "HSV", "I", "I;16N", "La", "RGBa"}
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def model() -> VisionModel:
    """An untrained tiny YOLOv1 on the CPU keeping every detection: its outputs depend on every
    pixel, so equal results mean equal inputs."""
    cfg = load_config(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml", TINY)
    torch.manual_seed(0)
    net = build_model(cfg.model)
    names = [f"c{i}" for i in range(cfg.model.num_classes)]
    ids = list(range(1, cfg.model.num_classes + 1))
    return VisionModel(Predictor(net, torch.device("cpu"), "detection", names, ids, 0.0), cfg)


def pixels(source) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 RGB image predict gives the model for ``source``."""
    (frame,) = read_frames(resolve_sources(source))
    return frame.image


def pil_image(mode: str, w: int, h: int, rng: np.random.Generator) -> Image.Image:
    """A ``w`` x ``h`` PIL image of ``mode`` with random pixels over the mode's whole range."""
    if mode == "1":
        return Image.frombytes("1", (w, h), rng.bytes((w + 7) // 8 * h))
    if mode.startswith("I;16"):
        return Image.frombytes(mode, (w, h), rng.bytes(2 * w * h))
    if mode == "I":
        return Image.fromarray(rng.integers(0, 65536, (h, w)).astype(np.int32))
    if mode == "F":
        return Image.fromarray(rng.random((h, w)).astype(np.float32))
    bands = len(Image.new(mode, (1, 1)).getbands())
    image = Image.frombytes(mode, (w, h), rng.bytes(bands * w * h))
    if mode in ("P", "PA"):
        image.putpalette(rng.bytes(768))
    return image


def by_path(image: Image.Image, folder: Path) -> dict[str, np.ndarray]:
    """``{format: read_image of the image saved in it}`` for each of PNG and TIFF that PIL can
    save the image's mode to and read_image can read back."""
    out = {}
    for fmt in ("PNG", "TIFF"):
        buffer = io.BytesIO()
        try:
            image.save(buffer, fmt)
        except OSError:  # PIL: cannot write mode ... as ...
            continue
        path = folder / f"image.{fmt.lower()}"
        path.write_bytes(buffer.getvalue())
        try:
            out[fmt] = read_image(path)
        except DataError:  # OpenCV cannot read 32-bit samples (modes I and F as TIFF)
            continue
    return out


@pytest.mark.parametrize("mode", Image.MODES)
@settings(max_examples=8, deadline=None)
@given(w=st.integers(1, 40), h=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_every_pil_mode_reads_as_the_same_image_saved_to_a_file(mode, w, h, seed, tmp_path_factory):
    rng = np.random.default_rng(seed)
    image = pil_image(mode, w, h, rng)
    got = pixels(image)
    assert got.shape == (h, w, 3) and got.dtype == np.uint8 and got.flags.writeable
    files = by_path(image, tmp_path_factory.mktemp("modes"))
    assert (not files) == (mode in NO_FILE), sorted(files)
    for fmt, expected in files.items():  # the PNG where PIL writes the mode, else the TIFF;
        # OpenCV reads an RGBA TIFF's colours multiplied by alpha (its PNG's as they are)
        if fmt == "PNG" or "PNG" not in files or mode != "RGBA":
            np.testing.assert_array_equal(got, expected, err_msg=f"{mode} vs {fmt} file")
    if mode in NO_FILE:  # the documented reading of modes no file holds
        if mode in ("I", "I;16N"):  # the 16-bit file of the same values
            same = Image.fromarray(np.asarray(image).astype("<u2"))
        elif mode == "F":  # float pixels in [0, 1]: rounded to 8 bits
            values = np.asarray(image)
            same = Image.fromarray(np.rint(values * np.float32(255)).astype(np.uint8))
        elif mode == "HSV":  # PIL's own conversion
            same = image.convert("RGB")
        else:  # premultiplied alpha: as the straight-alpha image
            same = image.convert({"La": "LA", "RGBa": "RGBA"}[mode])
        expected = by_path(same, tmp_path_factory.mktemp("same"))
        np.testing.assert_array_equal(got, expected.get("PNG", expected.get("TIFF")))


def test_sixteen_bit_grey_is_not_white_and_predict_gives_the_files_results(model, tmp_path):
    values = np.arange(40 * 48, dtype=np.uint16).reshape(40, 48) * 34  # 0..65246
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    image.save(tmp_path / "grey16.png")
    got = pixels(image)
    np.testing.assert_array_equal(got[..., 0], values >> 8)  # the high byte, as OpenCV reads it
    assert got.min() == 0 and got.max() == 254
    for mode in ("I;16", "RGBA", "CMYK", "P", "LA"):
        pil = image if mode == "I;16" else pil_image(mode, 48, 40, np.random.default_rng(1))
        fmt = "tiff" if mode == "CMYK" else "png"
        pil.save(tmp_path / f"{mode}.{fmt}")
        (a,), (b,) = model.predict(pil), model.predict(tmp_path / f"{mode}.{fmt}")
        assert len(a) > 0 and np.array_equal(a.image, b.image), mode
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores), mode


def expected_valid(obj) -> bool:
    """Whether an array or tensor is an image predict takes: uint8, or float with every value
    finite and in [0, 1]; ``(H, W)``, ``(H, W, 1|3|4)`` arrays or ``(1|3|4, H, W)`` tensors or
    ``(N, 1|3|4, H, W)`` batches of them; not empty."""
    if isinstance(obj, torch.Tensor):
        shape_ok = obj.dim() == 2 or (obj.dim() in (3, 4) and obj.shape[-3] in (1, 3, 4))
        floating = obj.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
        values = obj.float().numpy() if floating else None
        is_uint8 = obj.dtype == torch.uint8
    else:
        shape_ok = obj.ndim == 2 or (obj.ndim == 3 and obj.shape[2] in (1, 3, 4))
        floating = obj.dtype.kind == "f"
        values = obj.astype(np.float64) if floating else None
        is_uint8 = obj.dtype == np.uint8
    if not shape_ok or not (floating or is_uint8) or 0 in obj.shape:
        return False
    return not floating or bool(
        np.isfinite(values).all() and 0 <= values.min() <= values.max() <= 1
    )


DTYPES = st.sampled_from(
    ["uint8", "int8", "uint16", "int32", "int64", "bool", "float16", "float32", "float64",
     "complex64"]
)  # fmt: skip
SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)


@st.composite
def arrays_and_tensors(draw):
    dtype = np.dtype(draw(DTYPES))
    shape = draw(
        st.one_of(
            SHAPES,
            st.sampled_from([(4, 5, 3), (3, 4, 5), (4, 5), (4, 5, 1), (4, 5, 4), (2, 3, 4, 5)]),
        )
    )
    if dtype.kind == "f" and draw(st.booleans()):  # mostly in [0, 1]; else anything, NaN too
        elements = st.floats(0, 1, width=dtype.itemsize * 8)
    else:
        elements = None
    array = draw(hnp.arrays(dtype, shape, elements=elements))
    kind = draw(st.sampled_from(["array", "tensor", "bfloat16"]))
    if kind == "array" or dtype.kind in "c" or dtype == np.uint16:
        return array
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor.bfloat16() if kind == "bfloat16" and dtype.kind == "f" else tensor


@FUZZ
@given(obj=arrays_and_tensors())
def test_any_array_or_tensor_is_an_image_or_a_one_line_error(obj):
    valid = expected_valid(obj)
    event("a valid image" if valid else "refused")
    try:
        images = [f.image for f in read_frames(resolve_sources(obj))]
    except VisionkitError as e:
        assert isinstance(e, DataError) and not valid, str(e)
        assert "\n" not in str(e) and str(e).startswith(("array ", "tensor "))
        return
    assert valid
    batch = isinstance(obj, torch.Tensor) and obj.dim() == 4
    assert len(images) == (len(obj) if batch else 1)  # a batch: one image each
    for image, one in zip(images, obj if batch else [obj], strict=True):
        h, w = one.shape[:2] if isinstance(one, np.ndarray) else one.shape[-2:]
        assert image.shape == (h, w, 3) and image.dtype == np.uint8
        if isinstance(one, torch.Tensor):
            values = one.float().numpy() if one.is_floating_point() else one.numpy()
            values = values if values.ndim == 2 else values.transpose(1, 2, 0)
        else:
            values = one
        values = values.reshape(h, w, -1)[..., :3]  # alpha dropped
        if values.dtype != np.uint8:  # float: rounded to 8 bits in float32, halves to even
            values = np.rint(values.astype(np.float32) * np.float32(255)).astype(np.uint8)
        np.testing.assert_array_equal(image, np.broadcast_to(values, (h, w, 3)))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (torch.arange(192.0).reshape(3, 8, 8), r"^tensor 0: a float tensor must hold values in "
         r"\[0, 1\]; this one holds 0\.0\.\.191\.0 \(divide by 255\)$"),
        (torch.tensor([[0.0, 255.0]]), r"^tensor 0: a float tensor must hold values in \[0, 1\]; "
         r"this one holds 0\.0\.\.255\.0 \(divide by 255\)$"),
        (np.array([[-0.5, 0.5]]), r"^array 0: a float array must hold values in \[0, 1\]; "
         r"this one holds -0\.5\.\.0\.5$"),
        (np.array([[0.5, math.nan]], np.float32), r"^array 0: .* finite .* holds NaN$"),
        (torch.tensor([[0.5, math.inf]]), r"^tensor 0: .* finite .* holds infinite values$"),
        (Image.fromarray(np.array([[2.0]], np.float32)), r"^PIL image 0: .* mode F must hold "
         r"values in \[0, 1\]; this one holds 2\.0\.\.2\.0"),
        (Image.fromarray(np.array([[-1, 70000]], np.int32)), r"^PIL image 0: .* mode I must hold "
         r"values in 0\.\.65535 .*; this one holds -1\.\.70000$"),
        (Image.new("RGB", (0, 0)), r"^PIL image 0: an empty image \(0x0 pixels\)$"),
        (Image.new("L", (5, 0)), r"^PIL image 0: an empty image \(5x0 pixels\)$"),
        (np.zeros((0, 0, 3), np.uint8), r"^array 0: an empty image \(shape \(0, 0, 3\)\)$"),
        (np.zeros((0, 7, 3), np.uint8), r"^array 0: an empty image"),
        (torch.zeros(3, 0, 5), r"^tensor 0: an empty image"),
        (np.zeros((4, 4, 5), np.uint8), r"^array 0: an image must be \(H, W, 3\), \(H, W, 4\) "
         r"or \(H, W\), uint8 \(0\.\.255\) or float \(0\.\.1\); got uint8 \(4, 4, 5\)$"),
        (np.zeros((4, 4), np.uint16), r"^array 0: an image must be .* got uint16 \(4, 4\)$"),
        (np.zeros((2, 4, 4, 3), np.uint8), r"^array 0: an image must be .* got uint8 "
         r"\(2, 4, 4, 3\)$"),
        (torch.zeros(1, 2, 8, 8), r"^tensor 0: an image must be \(3, H, W\), \(4, H, W\), "
         r"\(H, W\) or \(N, 3, H, W\)"),
        (torch.zeros(0, 3, 8, 8), r"^tensor 0: an empty batch \(shape \(0, 3, 8, 8\)\)$"),
        (torch.stack([torch.zeros(3, 4, 4), torch.full((3, 4, 4), 2.0)]),
         r"^tensor 1: a float tensor must hold values in \[0, 1\]; this one holds 2\.0\.\.2\.0"),
        (-1, r"^webcam index -1: a webcam index is in 0\.\.2147483647$"),
        ("99999999999", r"^source not found: 99999999999"),
    ],
)  # fmt: skip
def test_bad_values_are_one_line_errors_naming_what_was_found(source, message):
    with pytest.raises(DataError, match=message) as e:
        resolve_sources(source)
    assert "\n" not in str(e.value)


def test_predict_refuses_bad_images_before_any_work(model):
    with pytest.raises(DataError, match="divide by 255"):
        model.predict([np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255.0)])
    (result,) = model.predict(np.full((8, 8, 3), 0.5, np.float32))
    assert (result.image == 128).all()  # rint(127.5): half to even


def test_a_source_naming_a_folder_or_file_is_never_a_webcam(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("2024").mkdir()
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save("2024/a.png")
    Path("7").write_bytes((tmp_path / "2024" / "a.png").read_bytes())  # an image without suffix
    assert [(s.kind, s.path) for s in resolve_sources("2024")] == [("image", "2024/a.png")]
    assert [(s.kind, s.path) for s in resolve_sources(" 7")] == [("webcam", "7")]  # " 7": nothing
    assert [(s.kind, s.path) for s in resolve_sources("7")] == [("image", "7")]
    assert [(s.kind, s.path) for s in resolve_sources("2025")] == [("webcam", "2025")]
    assert [(s.kind, s.path) for s in resolve_sources(3)] == [("webcam", "3")]
    results = model.predict("2024")
    assert [r.source for r in results] == ["2024/a.png"] and (results[0].image == 90).all()
    assert (model.predict("7")[0].image == 90).all()


@settings(max_examples=60, deadline=None)
@given(spec=st.text(st.characters(exclude_characters="/\\*", codec="utf-8"), max_size=300))
def test_any_source_string_is_sources_or_a_one_line_error(spec, tmp_path_factory):
    folder = tmp_path_factory.mktemp("strings")
    (folder / "2024").mkdir()
    Image.new("RGB", (4, 4)).save(folder / "2024" / "a.png")
    try:
        sources = resolve_sources(
            str(folder / spec) if spec and not spec.strip().isdigit() else spec
        )
    except VisionkitError as e:
        assert isinstance(e, DataError) and "\n" not in str(e)
        return
    assert sources


@pytest.mark.parametrize("value", [math.nan, math.inf, -1, -0.01, 1.01, 2, "0.5", True, None])
def test_score_thresh_is_a_number_in_0_1(model, value):
    what = r"must be a number in \[0, 1\] \(scores lie there\); got "
    if value is not None:
        with pytest.raises(ConfigError, match=r"^score_thresh " + what):
            model.predict(np.zeros((8, 8), np.uint8), score_thresh=value)
    with pytest.raises(ConfigError, match=r"^score_thresh " + what):
        visionkit.load("does-not-matter.pth", score_thresh=value)  # refused before the file


@pytest.mark.parametrize("value", [0, -3, MAX_BATCH + 1, 10**20, 2.5, True, "8"])
def test_batch_size_is_bounded(model, value):
    with pytest.raises(ConfigError, match=rf"^batch_size must be at least 1 and at most "
                       rf"{MAX_BATCH} \(a whole number of images per forward pass\)"):  # fmt: skip
        model.predict(np.zeros((8, 8), np.uint8), batch_size=value)
    assert len(model.predict(np.zeros((8, 8), np.uint8), batch_size=MAX_BATCH)) == 1


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [("--score-thresh", "nan", "--score-thresh must be a number in [0, 1]"),
     ("--score-thresh", "1.5", "--score-thresh must be a number in [0, 1]"),
     ("--batch-size", "0", "--batch-size must be at least 1 and at most"),
     ("--batch-size", str(10**9), "--batch-size must be at least 1 and at most")],
)  # fmt: skip
def test_infer_refuses_bad_numbers_before_any_work(flag, value, message, tmp_path):
    infer = load_script("tools/infer.py")
    with pytest.raises(ConfigError) as e:
        infer.main(
            ["--weights", str(tmp_path / "none.pth"), "--source", str(tmp_path), flag, value]
        )
    assert str(e.value).startswith(message)


def test_a_pil_image_of_a_truncated_file_is_a_one_line_error():
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(
        buffer, "PNG"
    )
    lazy = Image.open(io.BytesIO(buffer.getvalue()[:300]))  # opened; its pixels not yet read
    with pytest.raises(DataError, match=r"^PIL image 0: cannot read its pixels \(mode RGB: .*"
                       r"truncated.*\)$"):  # fmt: skip
        pixels(lazy)


def test_unreadable_paths_with_control_characters_are_reported_on_one_line(tmp_path):
    (tmp_path / "list.txt").write_text("a\x00b.jpg\n")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "new\nline.png").write_bytes(b"not an image")
    records = list(read_frames(resolve_sources([str(tmp_path / "list.txt"), tmp_path / "photos"])))
    assert [r.reason for r in records] == [
        f"cannot read image {str(tmp_path / 'a')!r}"[:-1] + "\\x00b.jpg': not a path",
        f"cannot read image {str(tmp_path / 'photos' / 'new')!r}"[:-1]
        + "\\nline.png': corrupt or not an image",
    ]
