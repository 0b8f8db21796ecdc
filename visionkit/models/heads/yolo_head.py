"""The YOLOv1 detection head: the paper's last 4 conv layers and 2 fully connected layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.models.heads.outputs import OutputConv2d, OutputLinear


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.1, inplace=True),
    )


class YoloHead(nn.Module):
    """Maps a feature map to the ``S x S x (B*5 + C)`` YOLOv1 output.

    The paper's head is 4 conv layers (the second with stride 2) then FC-4096 and FC-S*S*(B*5+C)
    with leaky ReLU 0.1 and dropout 0.5 after the first FC (``kind="fc"``). ``kind="conv"``
    replaces the FC layers with a 1x1 conv, which keeps the head small for CPU training.
    The feature map is average-pooled to ``S x S`` before the output layers, so any input size
    works. BatchNorm after each conv is a deviation from the paper that lets it train from scratch.

    Args:
        in_channels: channels of the backbone feature map.
        in_stride: its stride relative to the input; a stride-2 conv is used only when the map
            is larger than needed (stride < input / S).
        grid_size: S. boxes_per_cell: B. num_classes: C.
        input_size: ``(height, width)`` of the network input.
    """

    def __init__(
        self,
        in_channels: int,
        in_stride: int,
        grid_size: int,
        boxes_per_cell: int,
        num_classes: int,
        input_size: tuple[int, int],
        kind: str = "fc",
        extra_convs: int = 4,
        channels: int = 1024,
        hidden_dim: int = 4096,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.grid_size = grid_size
        self.out_per_cell = boxes_per_cell * 5 + num_classes
        feat = min(input_size) // in_stride
        layers, cin = [], in_channels
        for i in range(extra_convs):
            stride = 2 if i == 1 and feat >= 2 * grid_size else 1
            layers.append(_conv(cin, channels, stride))
            cin = channels
        self.convs = nn.Sequential(*layers)
        s2 = grid_size * grid_size
        if kind == "fc":
            self.out = nn.Sequential(
                nn.Flatten(),
                nn.Linear(cin * s2, hidden_dim),
                nn.LeakyReLU(0.1, inplace=True),
                nn.Dropout(dropout),
                OutputLinear(hidden_dim, s2 * self.out_per_cell),
            )
        elif kind == "conv":
            self.out = OutputConv2d(cin, self.out_per_cell, 1)
        else:
            raise ValueError(f"unknown YOLO head kind {kind!r}; expected 'fc' or 'conv'")
        self.kind = kind

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C_in, h, w)`` features -> ``(N, S, S, B*5 + C)`` raw (pre-activation) outputs."""
        x = self.out(adaptive_avg_pool(self.convs(x), self.grid_size))
        s = self.grid_size
        if self.kind == "fc":
            return x.view(-1, s, s, self.out_per_cell)
        return x.permute(0, 2, 3, 1).contiguous()


def adaptive_avg_pool(x: Tensor, size: int) -> Tensor:
    """``F.adaptive_avg_pool2d(x, size)`` for ``(N, C, h, w)`` ``x``, exportable for any ``h, w``.

    ONNX has no adaptive pooling: the exporter writes a fixed AveragePool and refuses sizes that
    ``size`` does not divide. Those take the same bins (``floor(i h / S)`` to ``ceil((i + 1) h /
    S)``) as two averaging matrices, ``A_h x A_w^T``, so that the graph computes what eager does.
    """
    h, w = x.shape[-2:]
    if h % size == 0 and w % size == 0:
        return F.adaptive_avg_pool2d(x, size)
    return _bins(h, size, x) @ x @ _bins(w, size, x).T  # (S, h) @ (N, C, h, w) @ (w, S)


def _bins(n: int, size: int, like: Tensor) -> Tensor:
    """``(size, n)``: row i averages positions ``floor(i n / size)`` to ``ceil((i + 1) n / size)``."""
    i = torch.arange(size)
    # non-negative integers only: ONNX's integer Div truncates where Python's // floors
    start, end = (i * n) // size, ((i + 1) * n + size - 1) // size
    pos = torch.arange(n)
    inside = (pos[None] >= start[:, None]) & (pos[None] < end[:, None])
    return (inside / (end - start)[:, None]).to(like)
