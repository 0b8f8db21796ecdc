"""The detection heads' prediction layers (scores, box deltas, mask logits;
models/heads/outputs.py) compute in float32 under autocast and are plain ``nn.Linear`` /
``nn.Conv2d`` without it: same parameters, same keys, same values bit for bit."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_model_contract import build, images, targets
from torch import nn

from visionkit.models import MODELS
from visionkit.models.heads.outputs import (
    OutputConv2d,
    OutputLinear,
    in_float32,
    prediction_input,
)

DETECTORS = [n for n in sorted(MODELS) if not n.startswith("fcn")]


def _pair(kind: str, cin: int, cout: int, seed: int) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    plain = nn.Linear(cin, cout) if kind == "linear" else nn.Conv2d(cin, cout, 1)
    ours = OutputLinear(cin, cout) if kind == "linear" else OutputConv2d(cin, cout, 1)
    ours.load_state_dict(plain.state_dict())
    return plain, ours


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["linear", "conv"]),
    cin=st.integers(1, 40),
    cout=st.integers(1, 20),
    n=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_the_plain_layer_without_autocast_and_float32_under_it(kind, cin, cout, n, seed):
    plain, ours = _pair(kind, cin, cout, seed)
    assert list(ours.state_dict()) == list(plain.state_dict())
    g = torch.Generator().manual_seed(seed)
    x = (
        torch.randn(n, cin, generator=g)
        if kind == "linear"
        else torch.randn(n, cin, 3, 5, generator=g)
    )
    assert torch.equal(ours(x), plain(x))
    half = x.bfloat16()
    with torch.autocast("cpu", torch.bfloat16):
        y = ours(half)
        assert plain(half).dtype == torch.bfloat16  # what it replaces would round to 8 bits
    assert y.dtype == torch.float32
    assert torch.equal(y, plain(half.float()))  # float32 math on the (already rounded) input


def test_gradients_reach_the_weights_and_the_input_under_autocast():
    layer = OutputConv2d(6, 4, 1)
    x = torch.randn(2, 6, 4, 4, dtype=torch.bfloat16, requires_grad=True)
    with torch.autocast("cpu", torch.bfloat16):
        layer(x).square().sum().backward()
    assert layer.weight.grad.dtype == torch.float32 and layer.weight.grad.abs().sum() > 0
    assert x.grad.dtype == torch.bfloat16 and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", DETECTORS)
def test_every_detector_predicts_scores_and_deltas_in_float32_under_bf16(name):
    model = build(name).train()
    outputs = [m for m in model.modules() if isinstance(m, OutputLinear | OutputConv2d)]
    assert len(outputs) >= 1, "no prediction layer"
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.dtype)) for m in outputs]
    with torch.autocast("cpu", torch.bfloat16):
        losses = model.loss(images(), targets(model))
    sum(losses.values()).backward()
    for h in hooks:
        h.remove()
    assert seen and all(d == torch.float32 for d in seen), seen


def test_a_model_cast_to_bfloat16_as_a_whole_keeps_computing_in_bfloat16():
    layer = OutputLinear(8, 3).bfloat16()
    x = torch.randn(4, 8, dtype=torch.bfloat16)
    with torch.autocast("cpu", torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16 and torch.equal(y, layer(x))


def test_in_float32_runs_any_computation_with_autocast_off():
    """What R-CNN's SVM scores go through: a matmul autocast would run in bfloat16."""
    weight = torch.randn(5, 16)
    x = torch.randn(3, 16, dtype=torch.bfloat16)
    with torch.autocast("cpu", torch.bfloat16):
        assert (x.float() @ weight.T).dtype == torch.bfloat16  # autocast's own choice
        y = in_float32(lambda f: f.float() @ weight.T, x)
    assert y.dtype == torch.float32 and torch.equal(y, x.float() @ weight.T)
    assert prediction_input(x).dtype == torch.bfloat16  # no autocast: as it is
    with torch.autocast("cpu", torch.bfloat16):
        assert prediction_input(x).dtype == torch.float32
