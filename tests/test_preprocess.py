"""The one Preprocessor and its ImageBatch: sizes, scales, padding, and boxes and label maps
there and back, in every resize mode, for several image sizes in one batch."""

import pytest
import torch
import torch.nn.functional as F

from visionkit.models.preprocess import Preprocessor
from visionkit.structures.labels import IGNORE_LABEL

MEAN, STD = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
SIZES = [(75, 100), (120, 60), (33, 47)]
MODES = {
    "fixed": dict(input_size=(64, 96)),
    "shorter_side": dict(min_size=48, max_size=80, size_divisor=16),
    "none": dict(size_divisor=32),
}
# hand-computed resized (h, w) of each image, and the padded batch
EXPECTED = {
    "fixed": ([(64, 96)] * 3, (64, 96)),
    # 75x100 -> 48/75 = 0.64 -> 48x64; 120x60 -> min(48/60, 80/120) = 2/3 -> 80x40;
    # 33x47 -> min(48/33, 80/47) = 1.4545 -> 48x68.36 -> 48x68
    "shorter_side": ([(48, 64), (80, 40), (48, 68)], (80, 80)),
    "none": (SIZES, (128, 128)),
}


def images():
    g = torch.Generator().manual_seed(0)
    return [torch.rand(3, h, w, generator=g) for h, w in SIZES]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_sizes_scales_and_padding(mode):
    pre = Preprocessor(mode, MEAN, STD, **MODES[mode])
    imgs = images()
    batch = pre(imgs)
    sizes, padded = EXPECTED[mode]
    assert batch.tensor.shape == (3, 3, *padded)
    assert batch.image_sizes.tolist() == [list(map(float, s)) for s in sizes]
    assert batch.original_sizes.tolist() == [list(map(float, s)) for s in SIZES]
    for i, ((h, w), (oh, ow)) in enumerate(zip(sizes, SIZES, strict=True)):
        assert batch.scales[i].tolist() == pytest.approx([w / ow, h / oh] * 2)
        inside = batch.tensor[i, :, :h, :w]
        resized = imgs[i] if (h, w) == (oh, ow) else F.interpolate(imgs[i][None], (h, w),
                                                                   mode="bilinear")[0]  # fmt: skip
        mean, std = torch.tensor(MEAN)[:, None, None], torch.tensor(STD)[:, None, None]
        torch.testing.assert_close(inside, (resized - mean) / std)
        assert (
            batch.tensor[i, :, h:].abs().sum() == 0 and batch.tensor[i, :, :, w:].abs().sum() == 0
        )
    assert pre.batch_shape(batch.original_sizes) == padded


@pytest.mark.parametrize("mode", sorted(MODES))
def test_boxes_round_trip_original_input_original(mode):
    pre = Preprocessor(mode, MEAN, STD, **MODES[mode])
    batch = pre(images())
    g = torch.Generator().manual_seed(1)
    boxes = []
    for h, w in SIZES:
        xy = torch.rand(5, 2, generator=g) * torch.tensor([w / 2, h / 2])
        wh = 1 + torch.rand(5, 2, generator=g) * torch.tensor([w / 2 - 1, h / 2 - 1])
        boxes.append(torch.cat([xy, xy + wh], 1))
    labels = [torch.arange(5)] * 3
    in_boxes, in_labels = batch.targets_to_input(boxes, labels)
    for ib, lab, (h, w) in zip(in_boxes, in_labels, batch.image_sizes.tolist(), strict=True):
        assert torch.equal(lab, torch.arange(5))
        assert (ib[:, 2] <= w + 1e-4).all() and (ib[:, 3] <= h + 1e-4).all()
    back = batch.postprocess([{"boxes": ib} for ib in in_boxes])
    for b, r in zip(boxes, back, strict=True):
        # exact up to float32 rounding of one multiplication and one division
        torch.testing.assert_close(r["boxes"], b, rtol=2e-7, atol=2e-5)


def test_degenerate_boxes_dropped_and_proposals_clipped():
    batch = Preprocessor("shorter_side", MEAN, STD, min_size=48, max_size=80)(images()[:1])
    boxes, labels = batch.targets_to_input(
        [torch.tensor([[10.0, 10.0, 10.0, 30.0], [5.0, 5.0, 50.0, 40.0]])], [torch.tensor([3, 4])]
    )
    assert labels[0].tolist() == [4]
    torch.testing.assert_close(boxes[0], torch.tensor([[3.2, 3.2, 32.0, 25.6]]))
    (props,) = batch.clip_to_input([torch.tensor([[-10.0, 0.0, 200.0, 50.0], [90, 0, 99, 9]])])
    # 75x100 -> 48x64 (scale 0.64): the first clipped to the image, the second stays inside
    torch.testing.assert_close(
        props, torch.tensor([[0.0, 0.0, 64.0, 32.0], [57.6, 0, 63.36, 5.76]])
    )


@pytest.mark.parametrize("mode", sorted(MODES))
def test_label_maps_there_and_back(mode):
    pre = Preprocessor(mode, MEAN, STD, **MODES[mode])
    batch = pre(images())
    g = torch.Generator().manual_seed(2)
    masks = [torch.randint(0, 4, s, generator=g) for s in SIZES]
    target = batch.masks_to_input(masks)
    assert target.shape == (3, *batch.tensor.shape[-2:]) and target.dtype == torch.int64
    for i, (h, w) in enumerate(batch.image_sizes.long().tolist()):
        assert (target[i, h:] == IGNORE_LABEL).all() and (target[i, :, w:] == IGNORE_LABEL).all()
        if mode == "none":
            assert torch.equal(target[i, :h, :w], masks[i])
    # one-hot logits of the batch-sized labels come back as each image's own label map
    logits = F.one_hot(target.clamp(max=3), 4).permute(0, 3, 1, 2).float()
    back = batch.postprocess([{"logits": x} for x in logits])
    for r, m in zip(back, masks, strict=True):
        assert r["sem_seg"].shape == m.shape and r["logits"].shape == (4, *m.shape)
        if mode == "none":
            assert torch.equal(r["sem_seg"], m)


def test_a_batch_tensor_at_the_input_size_is_used_as_it_is():
    pre = Preprocessor("fixed", MEAN, STD, input_size=(32, 48))
    x = torch.rand(2, 3, 32, 48)
    batch = pre(x)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    assert torch.equal(batch.tensor, (x - mean) / std)
    assert batch.scales.tolist() == [[1.0] * 4] * 2


def test_unknown_mode_and_missing_size_are_errors():
    with pytest.raises(ValueError, match="unknown resize mode"):
        Preprocessor("stretch", MEAN, STD)
    with pytest.raises(ValueError, match="needs input_size"):
        Preprocessor("fixed", MEAN, STD)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_batch_tensor_is_preprocessed_as_the_same_images_in_a_list(mode):
    pre = Preprocessor(mode, MEAN, STD, **MODES[mode])
    x = torch.rand(2, 3, 50, 70, generator=torch.Generator().manual_seed(3))
    as_tensor, as_list = pre(x), pre(list(x))
    torch.testing.assert_close(as_tensor.tensor, as_list.tensor)
    for key in ("image_sizes", "original_sizes", "scales"):
        assert torch.equal(getattr(as_tensor, key), getattr(as_list, key)), key


def test_half_precision_images_give_a_float32_batch():
    pre = Preprocessor("shorter_side", MEAN, STD, min_size=48, max_size=80, size_divisor=16)
    for half in ([img.half() for img in images()], torch.rand(2, 3, 40, 40).half()):
        assert pre(half).tensor.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["chw", "hwc"])  # datasets give HWC memory, permuted views
def test_each_image_is_normalized_into_its_corner_of_a_zero_padded_batch(dtype, layout):
    """(img - mean) / std in float32 at the image's corner, zeros elsewhere: bit for bit."""
    pre = Preprocessor("none", MEAN, STD, size_divisor=32)
    ims = [img.to(dtype) for img in images()]
    if layout == "hwc":
        ims = [img.permute(1, 2, 0).contiguous().permute(2, 0, 1) for img in ims]
    batch = pre(ims).tensor
    mean, std = torch.tensor(MEAN)[:, None, None], torch.tensor(STD)[:, None, None]
    expected = torch.zeros(3, 3, 128, 128)
    for i, img in enumerate(ims):
        h, w = img.shape[1:]
        expected[i, :, :h, :w] = (img.float() - mean) / std
    assert batch.dtype == torch.float32 and torch.equal(batch, expected)
