"""visionkit/models/cpu_parallel.py and grouped_nms_top_k: torchvision's kernels spread over the
CPU's threads, and NMS on the best boxes first, give torchvision's results element for element
(forward values, gradients, kept indices and their order)."""

from __future__ import annotations

import threading

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.ops import batched_nms, box_iou, nms, roi_align, roi_pool
from torchvision.ops.boxes import _batched_nms_vanilla

from visionkit.models import cpu_parallel
from visionkit.models.cpu_parallel import (
    _image_chunks,
    grouped_nms_cpu,
    parallel_map,
    pool_rois,
)
from visionkit.models.postprocess import grouped_nms_top_k


@pytest.fixture(autouse=True)
def two_threads():
    """The pool needs at least two threads to split anything (CI has 2 cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def random_boxes(g: torch.Generator, n: int, extent: float = 256.0, side: float = 60.0):
    xy = torch.rand(n, 2, generator=g) * extent
    wh = torch.rand(n, 2, generator=g) * side + 0.5
    return torch.cat([xy, xy + wh], 1)


def test_image_chunks_hand_made():
    image = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3, 3], dtype=torch.float32)
    rois = torch.cat([image[:, None], torch.zeros(10, 4)], 1)
    # 10 RoIs on 2 threads: cut at the first image boundary at or past 5 RoIs (after image 1)
    assert _image_chunks(rois, 2) == [(0, 5, 0, 2), (5, 10, 2, 4)]
    assert _image_chunks(rois, 1) is None  # one thread: one call
    assert _image_chunks(rois.flip(0), 2) is None  # not sorted by image: one call
    assert _image_chunks(rois[:3], 2) is None  # one image only
    assert _image_chunks(rois[:0], 2) is None  # nothing


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(0, 300),
    images=st.integers(1, 6),
    kind=st.sampled_from(["roi_pool", "roi_align"]),
    sort=st.booleans(),
    channels_last=st.booleans(),
)
def test_pool_rois_equals_torchvision_forward_and_backward(
    seed, n, images, kind, sort, channels_last
):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(images, 4, 12, 16, generator=g)
    if channels_last:
        features = features.to(memory_format=torch.channels_last)
    index = torch.randint(0, images, (n,), generator=g).float()
    if sort:
        index = index.sort().values
    rois = torch.cat([index[:, None], random_boxes(g, n, 128.0, 80.0)], 1)
    ours_in = features.clone().requires_grad_()
    ref_in = features.clone().requires_grad_()
    ours = pool_rois(ours_in, rois, kind, 3, 0.125, 2, True)
    ref = (
        roi_pool(ref_in, rois, 3, 0.125)
        if kind == "roi_pool"
        else roi_align(ref_in, rois, 3, 0.125, 2, True)
    )
    assert torch.equal(ours, ref)
    grad = torch.randn(ours.shape, generator=g)
    ours.backward(grad)
    ref.backward(grad)
    assert torch.equal(ours_in.grad, ref_in.grad)


def test_pool_rois_splits_and_passes_gradcheck():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(3, 2, 6, 6, dtype=torch.float64, generator=g, requires_grad=True)
    index = torch.tensor([0.0] * 4 + [1.0] * 4 + [2.0] * 4, dtype=torch.float64)
    rois = torch.cat([index[:, None], random_boxes(g, 12, 40.0, 20.0).double()], 1)
    assert _image_chunks(rois, 2) is not None  # the chunked path is the one checked
    assert torch.autograd.gradcheck(
        lambda f: pool_rois(f, rois, "roi_align", 2, 0.125, 2, True), (features,)
    )


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(0, 2500),
    groups=st.integers(1, 12),
    decimals=st.sampled_from([None, 1, 2]),
    thresh=st.floats(0.05, 0.95),
)
def test_grouped_nms_cpu_equals_batched_nms(seed, n, groups, decimals, thresh):
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(g, n)
    scores = torch.rand(n, generator=g)
    if decimals is not None:  # ties
        scores = scores.round(decimals=decimals)
    idx = torch.randint(0, groups, (n,), generator=g)
    # batched_nms's per-group loop (what it runs on the CPU above 1,000 boxes)
    expected = _batched_nms_vanilla(boxes, scores, idx, thresh)
    assert torch.equal(grouped_nms_cpu(boxes, scores, idx, thresh), expected)
    if n > 1000:
        assert torch.equal(expected, batched_nms(boxes, scores, idx, thresh))


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(0, 4000),
    groups=st.integers(1, 5),
    k=st.integers(1, 1500),
    ties=st.sampled_from(["none", "some", "all"]),
    nonfinite=st.sampled_from([None, float("nan"), float("inf"), float("-inf")]),
    thresh=st.floats(0.05, 0.95),
    stable_ties=st.booleans(),
)
def test_grouped_nms_top_k_equals_the_full_runs_first_k(
    seed, n, groups, k, ties, nonfinite, thresh, stable_ties
):
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(g, n)
    scores = torch.randn(n, generator=g)
    if ties == "some":
        scores = scores.round(decimals=1)
    elif ties == "all":
        scores = torch.zeros(n)
    if nonfinite is not None and n:
        scores[torch.randint(0, n, (max(n // 50, 1),), generator=g)] = nonfinite
    idx = torch.randint(0, groups, (n,), generator=g)
    ours = grouped_nms_top_k(boxes, scores, idx, thresh, k, stable_ties)
    full = batched_nms(boxes, scores, idx, thresh)
    reference = full[:k]
    if stable_ties and n > 1000 and bool(scores.isfinite().all()):
        # ties in the input order: the full per-group loop with a stable final sort
        assert torch.equal(ours, grouped_nms_cpu(boxes, scores, idx, thresh, stable=True)[:k])
        # torchvision's unstable sort orders ties among all its kept boxes, not only the first k
        if len(torch.unique(scores[full])) == len(full):
            assert torch.equal(ours, reference)  # distinct kept scores: torchvision's answer
    else:  # torchvision's answer, ties in its order
        assert torch.equal(ours, reference)


def test_torchvision_nms_visits_ties_in_input_order():
    """What grouped_nms_top_k relies on: the kernel's greedy order is (score down, index up)."""
    g = torch.Generator().manual_seed(3)
    boxes = random_boxes(g, 2000, 100.0, 30.0)
    scores = torch.randint(0, 20, (2000,), generator=g).float()  # ties everywhere
    iou = box_iou(boxes, boxes)
    suppressed, kept = torch.zeros(2000, dtype=torch.bool), []
    for i in sorted(range(2000), key=lambda i: (-scores[i].item(), i)):
        if not suppressed[i]:
            kept.append(i)
            suppressed |= iou[i] > 0.5
    assert nms(boxes, scores, 0.5).tolist() == kept


def test_grouped_nms_top_k_takes_the_prefix_when_exact(monkeypatch):
    """k small: one NMS on the 2k best boxes answers (no full run)."""
    g = torch.Generator().manual_seed(1)
    boxes, scores = random_boxes(g, 3000), torch.randn(3000, generator=g)
    idx = torch.randint(0, 2, (3000,), generator=g)
    sizes = []
    real = cpu_parallel.grouped_nms_cpu

    def spy(b, s, gr, t, stable=False):
        sizes.append(len(b))
        return real(b, s, gr, t, stable)

    monkeypatch.setattr("visionkit.models.postprocess.grouped_nms_cpu", spy)
    out = grouped_nms_top_k(boxes, scores, idx, 0.7, 100)
    assert torch.equal(out, batched_nms(boxes, scores, idx, 0.7)[:100])
    assert sizes == [200]


def test_parallel_map_order_errors_and_nesting():
    assert parallel_map(lambda x: x * x, range(7)) == [x * x for x in range(7)]
    threads = set(parallel_map(lambda _: threading.current_thread().name, range(8)))
    assert any(name.startswith("visionkit-cpu") for name in threads)

    def inner(x):  # a nested map runs on the worker itself (no deadlock on a full pool)
        return parallel_map(lambda y: (threading.current_thread().name, y), range(3))

    for result in parallel_map(inner, range(4)):
        assert len({name for name, _ in result}) == 1

    def boom(x):
        raise ValueError(f"bad {x}")

    with pytest.raises(ValueError, match="bad"):
        parallel_map(boom, range(3))
    torch.set_num_threads(1)
    assert (
        parallel_map(lambda _: threading.current_thread().name, range(3))
        == [threading.current_thread().name] * 3
    )
