"""CUDA paths, run by ``benchmarks/device_check.py`` on a GPU machine (``pytest -m cuda``) and
skipped elsewhere: every model trains under fp16 (with the gradient scaler) and bf16 autocast and
predicts on the GPU; the raw outputs of the dense models match the CPU's; the trainer runs on
CUDA with fp16 and pinned loader memory."""

import pytest
import torch
from test_model_contract import RoIs, build, images, targets
from test_tools_e2e import ROOT, run_tool, tiny_overrides

from visionkit.models import MODELS

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def on(device: str, items: list) -> list:
    return [
        {k: v.to(device) if torch.is_tensor(v) else v for k, v in x.items()}
        if isinstance(x, dict)
        else x.to(device)
        for x in items
    ]


@pytest.mark.parametrize("amp", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_training_steps_and_predict_on_cuda(name, amp):
    model = build(name).cuda().train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    for _ in range(2):
        optimizer.zero_grad()
        with torch.autocast("cuda", amp):
            losses = model.loss(on("cuda", images()), on("cuda", targets(model)))
        assert all(torch.isfinite(v) for v in losses.values()), losses
        scaler.scale(sum(losses.values())).backward()
        scaler.step(optimizer)
        scaler.update()
    with torch.inference_mode(), torch.autocast("cuda", amp):
        predictions = model.eval().predict(on("cuda", images()))
    for prediction in predictions:
        for key, value in prediction.items():
            assert value.device.type == "cuda", key
            if value.is_floating_point():
                assert value.dtype == torch.float32 and torch.isfinite(value).all(), key


@pytest.mark.parametrize("name", ["yolo_v1", "fcn", "fast_rcnn"])
def test_raw_outputs_match_the_cpu(name, monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    model = build(name).eval()
    batch = model.preprocess(images()).tensor
    extra = {"rois": RoIs} if name == "fast_rcnn" else {}
    with torch.no_grad():
        cpu = model(batch, **extra)
        gpu = model.cuda()(batch.cuda(), **{k: r.cuda() for k, r in extra.items()})
    pairs = [(cpu, gpu)] if torch.is_tensor(cpu) else [(cpu[k], gpu[k]) for k in cpu]
    for a, b in pairs:
        torch.testing.assert_close(b.cpu(), a, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_train_tool_on_cuda_with_fp16(tmp_path):
    proc = run_tool(
        "train.py", "--config", str(ROOT / "visionkit/configs/yolo_v1_shapes.yaml"), "--output-dir",
        str(tmp_path / "run"), "--no-progress", *tiny_overrides(tmp_path / "cache", 1),
        "train.device=cuda", "train.amp=fp16", "data.num_workers=2",
    )  # fmt: skip
    assert "mixed precision: torch.float16 autocast on cuda with a gradient scaler" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("done: 1 epochs")
