"""Box heads: the per-RoI feature extractor between the RoI pooler and the Fast R-CNN outputs.

- :class:`TwoFCHead`: flatten, then two FC layers with ReLU (and dropout): VGG-16's fc6/fc7 in
  Fast/Faster R-CNN, or SPPNet's fc layers on the pyramid vector.
- :class:`Res5Head`: a ResNet's last stage applied to each RoI, then global average pooling
  (the "C4" Faster R-CNN of the ResNet paper).
"""

from __future__ import annotations

from torch import Tensor, nn


class TwoFCHead(nn.Module):
    """``(K, ...)`` pooled features -> ``(K, fc_dim)``.

    Args:
        in_features: the flattened size of one pooled RoI (``C * k * k`` or ``C * sum(l^2)``).
        fc_dim: width of both layers. dropout: probability after each layer (0 = none).
    """

    def __init__(self, in_features: int, fc_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.out_dim = fc_dim
        self.layers = nn.Sequential(
            nn.Flatten(1),
            nn.Linear(in_features, fc_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc_dim, fc_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class Res5Head(nn.Module):
    """``(K, C, k, k)`` pooled features -> the stage -> global average pool -> ``(K, out_dim)``.

    Args:
        stage: the backbone stage run on each RoI (e.g. ResNet ``res5``, stride 2).
        out_dim: its output channels.
    """

    def __init__(self, stage: nn.Module, out_dim: int) -> None:
        super().__init__()
        self.stage, self.out_dim = stage, out_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.stage(x).mean((2, 3))
