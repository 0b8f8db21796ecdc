"""tools/visualize.py on a tiny LeNet YOLOv1: filter grid geometry and colours, feature maps of
chosen layers computed on the model's own preprocessing, one-line errors."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from script_loader import load_script

from visionkit.analysis.visualize import feature_maps, filter_grid
from visionkit.checkpoints import save_checkpoint
from visionkit.config import load_config
from visionkit.errors import ConfigError
from visionkit.io.image import read_image_tensor
from visionkit.models import build_model
from visionkit.utils.cli import run_cli

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml")
TINY = [
    "model.backbone.name=lenet",
    "model.backbone.out_features=[]",
    "model.input_size=[64,64]",
    "model.yolo.grid_size=4",
    "model.yolo.head_channels=16",
    "model.yolo.extra_convs=1",
]


def grid_shape(n: int, tile: int) -> tuple[int, int, int]:
    """A grid of n square tiles: ceil(sqrt(n)) columns, 1-px separators and border."""
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    return rows * (tile + 1) + 1, cols * (tile + 1) + 1, 3


@pytest.fixture
def image(tmp_path) -> Path:
    img = np.full((80, 100, 3), 40, np.uint8)
    cv2.rectangle(img, (20, 15), (60, 55), (0, 200, 255), -1)
    path = tmp_path / "shape.png"
    cv2.imwrite(str(path), img)
    return path


def test_filter_grid_has_one_tile_per_filter_in_rgb(tmp_path):
    model = build_model(load_config(CONFIG, TINY).model)
    conv = model.backbone.stages.c1[0]  # LeNet's first layer: 6 filters of 3 x 5 x 5
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0] = 1.0  # filter 0 reads red only, filter 1 blue only
        conv.weight[1, 2] = 1.0
    weights = tmp_path / "w.pth"
    save_checkpoint({"model_name": "yolo_v1", "model": model.state_dict()}, weights)
    out = tmp_path / "vis"
    tool = load_script("tools/visualize.py")
    tool.main(["--config", CONFIG, *TINY, "--weights", str(weights), "--output", str(out)])
    grid = cv2.imread(str(out / "filters.png"))
    # 5 x 5 filters enlarged x6 (the largest factor within --filter-size 32): 30-px tiles
    assert grid.shape == grid_shape(6, 30)
    assert (grid[0] == 255).all() and (grid[:, 31] == 255).all()  # separator lines
    assert (grid[1:31, 1:31] == (0, 0, 255)).all()  # BGR red
    assert (grid[1:31, 32:62] == (255, 0, 0)).all()  # BGR blue
    assert (filter_grid(torch.randn(8, 1, 3, 3), tile=9)[1:10, 1:10].std(-1) == 0).all()


def test_feature_maps_of_requested_layers_on_the_models_input(tmp_path, image):
    out = tmp_path / "vis"
    tool = load_script("tools/visualize.py")
    args = ["--config", CONFIG, *TINY, "--output", str(out), "--image", str(image)]
    tool.main([*args, "--layers", "c1", "head.convs", "--max-channels", "4"])
    written = sorted(p.name for p in out.iterdir())
    assert written == [
        "features_backbone.stages.c1.png",
        "features_head.convs.png",
        "filters.png",
        "input.png",
    ]
    assert cv2.imread(str(out / "input.png")).shape == (64, 64, 3)  # the model's input size
    # c1: 4 of 6 channels at 32 x 32, enlarged x2 towards --map-size 64
    assert cv2.imread(str(out / "features_backbone.stages.c1.png")).shape == grid_shape(4, 64)
    tool.main(args)  # default: every backbone level
    assert {f"features_backbone.stages.{n}.png" for n in ("c1", "c2", "c3")} <= {
        p.name for p in out.iterdir()
    }
    # the maps are the backbone's on the resized, normalized image
    torch.manual_seed(0)
    model = build_model(load_config(CONFIG, TINY).model).eval()
    img = read_image_tensor(image)
    _, maps = feature_maps(model, img, ["backbone.stages.c2"])
    x = F.interpolate(img[None], (64, 64), mode="bilinear", align_corners=False)
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model.backbone.stages.c2(model.backbone.stages.c1(x))[0]
    assert maps["backbone.stages.c2"].shape == (16, 16, 16)
    torch.testing.assert_close(maps["backbone.stages.c2"], expected)


def test_unknown_layer_is_a_one_line_error(tmp_path, image, capsys):
    tool = load_script("tools/visualize.py")
    argv = ["--config", CONFIG, *TINY, "--output", str(tmp_path / "vis"), "--image", str(image)]
    with pytest.raises(SystemExit) as e:
        run_cli(tool.main, [*argv, "--layers", "c9"])
    assert e.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no layer 'c9'" in err[0] and "--list-layers" in err[0]
    assert not (tmp_path / "filters.png").exists()


def test_help_shows_examples_and_list_layers_names_levels(capsys):
    tool = load_script("tools/visualize.py")
    with pytest.raises(SystemExit):
        tool.main(["--help"])
    assert "visionkit visualize yolo_v1_shapes" in capsys.readouterr().out
    tool.main(["--config", CONFIG, *TINY, "--list-layers"])
    out = capsys.readouterr().out
    assert "c3           backbone.stages.c3" in out and "head.convs" in out


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--filter-size", "0"), ("--filter-size", "4097"), ("--map-size", "100000"),
     ("--max-channels", "0"), ("--max-channels", "1000000")],
)  # fmt: skip
def test_numeric_arguments_are_bounded_in_one_line(tmp_path, image, capsys, flag, value):
    tool = load_script("tools/visualize.py")
    argv = ["--config", CONFIG, *TINY, "--output", str(tmp_path), "--image", str(image)]
    with pytest.raises(SystemExit) as e:
        run_cli(tool.main, [*argv, flag, value])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {flag} must be in [1, 4096], got {value}"]
    assert not (tmp_path / "filters.png").exists()


def test_a_grid_too_large_is_refused_before_allocating(monkeypatch):
    from visionkit.analysis import visualize as vis

    def no_allocation(*args, **kwargs):
        raise AssertionError("allocated")

    monkeypatch.setattr(vis.np, "full", no_allocation)
    monkeypatch.setattr(vis.np, "repeat", no_allocation)
    # 1024 filters of 3x3 enlarged to 4095 px: a 32 x 32 grid of 4095-px tiles (48 GiB)
    with pytest.raises(ConfigError, match=r"^a grid of 1024 tiles of 4095x4095 px would be .* GiB"):
        vis.filter_grid(torch.zeros(1024, 3, 3, 3), 4096)
    with pytest.raises(ConfigError, match=r"a tile size must be in \[1, 4096\] px, got 100000$"):
        vis.filter_grid(torch.zeros(8, 3, 3, 3), 100_000)
    with pytest.raises(ConfigError, match="^a grid of 4096 tiles of 1024x1024 px"):
        vis.feature_grid(torch.zeros(4096, 1, 1), 4096, 1024)
    with pytest.raises(ConfigError, match=r"max_channels must be in \[1, 4096\], got 0"):
        vis.feature_grid(torch.zeros(4, 8, 8), 0)


def test_grid_bound_is_exact_and_a_grid_within_it_is_drawn():
    from visionkit.analysis.visualize import MAX_GRID_PIXELS, feature_grid, grid_shape

    assert grid_shape(64, 1022, 1022) == (8185, 8185)  # 8 x 8 tiles: 8185^2 <= 8192^2 px
    assert 8185 * 8185 <= MAX_GRID_PIXELS < 8193 * 8193
    with pytest.raises(ConfigError, match="would be 8193x8193 px"):
        grid_shape(64, 1023, 1023)
    grid = feature_grid(torch.rand(16, 4, 4), 16, 512)  # 4 x 4 tiles enlarged x128 to 512 px
    assert grid.shape == (4 * 513 + 1, 4 * 513 + 1, 3)
