import pytest
import torch

from visionkit.structures import clip_boxes, convert_boxes, valid_boxes_mask

XYXY = torch.tensor([[10.0, 20.0, 50.0, 80.0]])


@pytest.mark.parametrize(
    ("fmt", "expected", "size"),
    [
        ("xywh", [10.0, 20.0, 40.0, 60.0], None),
        ("cxcywh", [30.0, 50.0, 40.0, 60.0], None),
        ("voc", [11.0, 21.0, 50.0, 80.0], None),
        ("cxcywh_norm", [30 / 100, 50 / 200, 40 / 100, 60 / 200], (200, 100)),
    ],
)
def test_convert_to_and_from_xyxy(fmt, expected, size):
    out = convert_boxes(XYXY, "xyxy", fmt, image_size=size)
    assert torch.allclose(out, torch.tensor([expected]))
    assert torch.allclose(convert_boxes(out, fmt, "xyxy", image_size=size), XYXY)


def test_convert_between_edge_formats_and_empty():
    assert torch.allclose(
        convert_boxes([[10, 20, 40, 60]], "xywh", "voc"), torch.tensor([[11.0, 21, 50, 80]])
    )
    assert convert_boxes(torch.zeros(0, 4), "xywh", "xyxy").shape == (0, 4)
    with pytest.raises(ValueError, match="image_size"):
        convert_boxes(XYXY, "xyxy", "cxcywh_norm")
    with pytest.raises(ValueError, match="unknown box format"):
        convert_boxes(XYXY, "xyxy", "yxyx")


def test_clip_and_valid():
    b = torch.tensor([[-5.0, -5, 30, 300], [10, 10, 10, 20]])
    assert torch.equal(
        clip_boxes(b, (100, 50)), torch.tensor([[0.0, 0, 30, 100], [10, 10, 10, 20]])
    )
    assert valid_boxes_mask(b).tolist() == [True, False]
