"""The backbone contract: a chain of named stages, each a level with channels and a stride."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops.misc import FrozenBatchNorm2d

from visionkit.errors import ConfigError


class Backbone(nn.Module):
    """A CNN trunk split into consecutive stages; returns ``dict[str, Tensor]`` of chosen levels.

    Args:
        stages: ``(name, module, channels, stride)`` from shallow to deep; stage ``k`` consumes
            stage ``k-1``'s output. ``stride`` is relative to the input image.
        out_features: the level names ``forward`` returns ([] or None = the deepest level only).

    Attributes:
        levels: every level: name -> ``(channels, stride)``.
        out_features: the returned levels; ``forward`` stops after the deepest of them.
    """

    def __init__(
        self,
        stages: Sequence[tuple[str, nn.Module, int, int]],
        out_features: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.stages = nn.ModuleDict({name: module for name, module, _, _ in stages})
        self.levels = {name: (ch, stride) for name, _, ch, stride in stages}
        self._frozen = 0
        self.set_out_features(out_features)

    def set_out_features(self, out_features: Sequence[str] | None) -> None:
        """Choose the returned levels; unknown names are a ConfigError listing the valid ones."""
        names = list(self.levels)
        out = list(out_features or [names[-1]])
        bad = [n for n in out if n not in self.levels]
        if bad:
            raise ConfigError(
                f"backbone has no level '{bad[0]}'; its levels are {', '.join(names)}"
            )
        self.out_features = sorted(out, key=names.index)

    def drop_unused_stages(self) -> dict[str, nn.Module]:
        """Remove the stages after the deepest returned level (``forward`` never runs them) and
        return them by name, in order; a model that reuses one (a C4 ``res5`` box head) takes it
        from the result. Their parameters then leave the model, its checkpoints and its counts."""
        names = list(self.stages)
        later = names[names.index(self.out_features[-1]) + 1 :]
        dropped = {name: self.stages[name] for name in later}
        for name in later:
            del self.stages[name]
            del self.levels[name]
        return dropped

    @property
    def out_channels(self) -> dict[str, int]:
        return {n: self.levels[n][0] for n in self.out_features}

    @property
    def out_strides(self) -> dict[str, int]:
        return {n: self.levels[n][1] for n in self.out_features}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``(N, 3, H, W)`` normalized images -> ``{level: (N, C_l, H / s_l, W / s_l)}``."""
        out, last = {}, self.out_features[-1]
        for name, stage in self.stages.items():
            x = stage(x)
            if name in self.out_features:
                out[name] = x
            if name == last:
                break
        return out

    def freeze(self, num_stages: int) -> None:
        """No gradient for the first ``num_stages`` stages; their BatchNorms stay in eval mode."""
        if num_stages > len(self.stages):
            raise ConfigError(
                f"freeze_stages={num_stages} but the backbone has {len(self.stages)} stages"
            )
        self._frozen = num_stages
        for stage in list(self.stages.values())[:num_stages]:
            for p in stage.parameters():
                p.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        for stage in list(self.stages.values())[: self._frozen]:
            for m in stage.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self


def freeze_batchnorms(module: nn.Module, eps: float = 1e-5) -> None:
    """Replace every ``BatchNorm2d`` under ``module`` by torchvision's ``FrozenBatchNorm2d``
    with its statistics and affine (buffers ``weight``, ``bias``, ``running_mean``,
    ``running_var``; ``y = (x - mean) * weight / sqrt(var + eps) + bias``), as torchvision's
    detection backbones are built."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps)
            with torch.no_grad():
                for key in ("weight", "bias", "running_mean", "running_var"):
                    getattr(frozen, key).copy_(getattr(child, key))
            setattr(module, name, frozen)
        else:
            freeze_batchnorms(child, eps)


def conv_bn_act(
    cin: int, cout: int, k: int = 3, stride: int = 1, act: str = "leaky"
) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + leaky ReLU 0.1 (or ReLU)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.1, inplace=True) if act == "leaky" else nn.ReLU(inplace=True),
    )
