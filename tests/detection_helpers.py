"""Helpers shared by the two-stage detector tests."""

import torch


def targets_with_proposals(*images):
    """Per image ``(boxes, proposals)`` lists -> targets with labels ``i % 3``."""
    return [
        {
            "boxes": torch.tensor(b, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.arange(len(b), dtype=torch.int64) % 3,
            "proposals": torch.tensor(p, dtype=torch.float32).reshape(-1, 4),
        }
        for b, p in images
    ]


def check_losses_and_gradients(model, images, tgts, keys):
    """The loss dict has exactly ``keys``, finite scalars, and finite, non-zero gradients."""
    losses = model.loss(images, tgts)
    assert set(losses) == keys
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    model.zero_grad()
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    return losses
