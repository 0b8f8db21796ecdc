"""Mixed precision on CPU: every registered model trains and predicts under bfloat16 autocast
(finite losses, parameters updated, float32 at the model's boundary), and ``train.amp=bf16``
really trains under autocast; ``train.amp=auto`` (the default) is bf16 where the device computes
bfloat16 natively and float32 elsewhere, saying which and why."""

import contextlib
import subprocess
import sys

import pytest
import torch
from test_model_contract import build, images, targets
from test_tools_e2e import ROOT, tiny_overrides

from visionkit.checkpoints.device import native_bfloat16
from visionkit.config import Config, load_config
from visionkit.config.loader import config_to_dict
from visionkit.engine.amp import mixed_precision
from visionkit.engine.resume import resume_changes
from visionkit.errors import ConfigError
from visionkit.models import MODELS

CONFIG = str(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml")


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


def cpu_features(monkeypatch, avx512_bf16: bool | None, amx: bool | None) -> None:
    """torch.cpu's probes forced (None: this torch has no such probe)."""
    for probe, value in (("_is_avx512_bf16_supported", avx512_bf16), ("_is_amx_tile_supported",
                                                                       amx)):  # fmt: skip
        if value is None:
            monkeypatch.delattr(torch.cpu, probe, raising=False)
        else:
            monkeypatch.setattr(torch.cpu, probe, lambda v=value: v)


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "native", "why"),
    [
        (True, False, True, "the CPU has native bfloat16 (AVX512-BF16)"),
        (False, True, True, "the CPU has native bfloat16 (AMX)"),
        (True, True, True, "the CPU has native bfloat16 (AVX512-BF16, AMX)"),
        (False, False, False, "this CPU has no native bfloat16"),
        (None, None, False, "this CPU has no native bfloat16"),  # a torch without the probes
    ],
)
def test_native_bfloat16_on_cpu_asks_torch_cpu(monkeypatch, avx512_bf16, amx, native, why):
    cpu_features(monkeypatch, avx512_bf16, amx)
    assert native_bfloat16(torch.device("cpu")) == (native, why)


def test_auto_is_bf16_on_a_cpu_with_native_bfloat16_and_float32_without(monkeypatch):
    cpu = torch.device("cpu")
    cpu_features(monkeypatch, True, False)
    assert mixed_precision("auto", cpu) == (
        torch.bfloat16,
        "mixed precision: torch.bfloat16 autocast on cpu (train.amp=auto: the CPU has native "
        "bfloat16 (AVX512-BF16))",
    )
    cpu_features(monkeypatch, False, False)
    assert mixed_precision("auto", cpu) == (
        None,
        "mixed precision: off, float32 on cpu (train.amp=auto: this CPU has no native bfloat16)",
    )
    # the one detection function decides: forcing it is enough
    monkeypatch.setattr("visionkit.engine.amp.native_bfloat16", lambda d: (True, "forced"))
    assert mixed_precision("auto", cpu)[0] == torch.bfloat16
    assert mixed_precision("none", cpu) == (None, None)  # explicit choices ask nothing
    assert mixed_precision("bf16", cpu)[0] == torch.bfloat16


class FakeCuda:
    """torch.cuda's calls native_bfloat16 makes, on a machine with one GPU of ``major``.x."""

    def __init__(self, major: int) -> None:
        self.major, self.current = major, None

    def is_bf16_supported(self, including_emulation: bool = True) -> bool:
        assert not including_emulation  # emulated bfloat16 is slower than float32
        return self.major >= 8

    def current_device(self) -> int:
        return 0

    def device(self, index: int):
        self.current = index
        return contextlib.nullcontext()


@pytest.mark.parametrize(("major", "dtype"), [(8, torch.bfloat16), (7, None)])
def test_auto_on_cuda_asks_that_gpu(monkeypatch, major, dtype):
    fake = FakeCuda(major)
    for name in ("is_bf16_supported", "current_device", "device"):
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))
    got, line = mixed_precision("auto", torch.device("cuda:1"))
    assert got == dtype and fake.current == 1  # the GPU named, not the current one
    if dtype is None:
        assert line == (
            "mixed precision: off, float32 on cuda (train.amp=auto: cuda:1 has no native "
            "bfloat16 (compute capability below 8.0))"
        )
    else:
        assert line == (
            "mixed precision: torch.bfloat16 autocast on cuda (train.amp=auto: cuda:1 computes "
            "bfloat16 natively)"
        )
    assert native_bfloat16(torch.device("cuda"))[1].startswith("cuda:0 ")  # the current one


def test_config_defaults_to_auto_and_refuses_junk_in_one_line(tmp_path):
    assert Config().train.amp == "auto"
    assert load_config(CONFIG, ["train.amp=none"]).train.amp == "none"
    for value in ("auto", "bf16", "fp16"):
        assert load_config(CONFIG, [f"train.amp={value}"]).train.amp == value
    for junk in ("fp32", "yes", "1", "[bf16]"):
        with pytest.raises(ConfigError) as e:
            load_config(CONFIG, [f"train.amp={junk}"])
        message = str(e.value)
        assert "\n" not in message and "amp' must be one of auto, none, fp16, bf16; got" in message
    yaml = tmp_path / "c.yaml"
    yaml.write_text("base: yolo_v1_shapes.yaml\ntrain:\n  amp: half\n")
    with pytest.raises(ConfigError, match=r"amp' must be one of .*; got 'half'$"):
        load_config(str(yaml))


def test_resume_may_change_train_amp_and_says_so():
    # a run started before auto became the default holds amp: none; resumed with the new default
    saved = config_to_dict(load_config(CONFIG, ["train.amp=none"]))
    lines = resume_changes(saved, load_config(CONFIG), 1, "runs/x/last.pth")
    assert lines == ["resume: train.amp 'none' -> 'auto' (the precision of the remaining steps)"]


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
