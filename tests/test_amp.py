"""Mixed precision on CPU: every registered model trains and predicts under bfloat16 autocast
(finite losses, parameters updated, float32 at the model's boundary), and ``train.amp=bf16``
really trains under autocast."""

import subprocess
import sys

import pytest
import torch
from test_model_contract import build, images, targets
from test_tools_e2e import ROOT, tiny_overrides

from visionkit.engine.amp import mixed_precision
from visionkit.errors import ConfigError
from visionkit.models import MODELS


@pytest.mark.parametrize("name", sorted(MODELS))
def test_two_training_steps_and_predict_under_bf16_autocast(name):
    model = build(name).train()
    before = {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    for _ in range(2):
        optimizer.zero_grad()
        with torch.autocast("cpu", torch.bfloat16):
            losses = model.loss(images(), targets(model))
        assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values()), losses
        sum(losses.values()).backward()
        optimizer.step()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    changed = [k for k, p in model.named_parameters() if k in before and not p.equal(before[k])]
    assert len(changed) == len(before), set(before) - set(changed)
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
        predictions = model.eval().predict(images())
    for prediction, (h, w) in zip(predictions, [im.shape[1:] for im in images()], strict=True):
        for key, value in prediction.items():
            if value.is_floating_point():
                assert value.dtype == torch.float32, (key, value.dtype)
                assert torch.isfinite(value).all(), key
        if "boxes" in prediction:
            boxes = prediction["boxes"]
            assert len(boxes) and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        else:
            assert prediction["sem_seg"].shape == (h, w)


def test_amp_settings_per_device():
    assert mixed_precision("none", torch.device("cpu")) == (None, None)
    dtype, line = mixed_precision("bf16", torch.device("cpu"))
    assert dtype == torch.bfloat16 and line == (
        "mixed precision: torch.bfloat16 autocast on cpu (train.amp=bf16)"
    )
    with pytest.raises(ConfigError, match="train.amp=fp16 runs on CUDA only"):
        mixed_precision("fp16", torch.device("cpu"))


# tools/train.py with torch.autocast wrapped to record the dtype of the losses it computes
PROBE = """
import runpy, sys, torch
seen = []
real = torch.autocast
class Recording(real):
    def __enter__(self):
        seen.append((self.device, self.fast_dtype, self._enabled))
        return super().__enter__()
torch.autocast = Recording
sys.argv = ["train.py", *sys.argv[1:]]
try:
    runpy.run_path(r"{train}", run_name="__main__")
finally:
    print("AUTOCAST", sorted(set(map(str, seen))), file=sys.stderr)
"""


@pytest.mark.slow
def test_train_tool_trains_under_bf16_autocast_on_cpu(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE.format(train=ROOT / "tools" / "train.py"))
    args = ["--config", str(ROOT / "visionkit/configs/yolo_v1_shapes.yaml"), "--output-dir",
            str(tmp_path / "run"), "--no-progress", *tiny_overrides(tmp_path / "cache", 1),
            "train.amp=bf16", "train.device=cpu"]  # fmt: skip
    proc = subprocess.run([sys.executable, str(probe), *args], capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "mixed precision: torch.bfloat16 autocast on cpu (train.amp=bf16)" in proc.stdout
    seen = proc.stderr.strip().splitlines()[-1]
    assert "('cpu', torch.bfloat16, True)" in seen, seen
