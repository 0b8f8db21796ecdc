"""Resume that means resume: the checkpoint's config wins, a change is applied and said, or
refused in one line naming the key.

A resumed run continues the run its checkpoint belongs to. Most of a config cannot change halfway
without making the run something else (the model, the data, the optimizer, the learning rate and
its schedule): those keys are refused. The keys of :data:`CHANGEABLE` only say where and how long
the run goes on; they are applied, and each change is one line of the run's output.
"""

from __future__ import annotations

from typing import Any

from visionkit.config.diff import changed_keys, flatten, show_changes
from visionkit.config.loader import config_to_dict
from visionkit.config.schema import Config
from visionkit.errors import ConfigError

CHANGEABLE = {
    "train.epochs": "the schedule is recomputed for the new total",
    "train.eval_every": "",
    "train.log_every": "",
    "train.device": "",
    "train.output_dir": "",
    "train.dist_backend": "",
    "train.find_unused_parameters": "",
    # another batch layout (processes x batch x accumulation), from an epoch boundary only
    "data.batch_size": "from an epoch boundary only",
    "train.accumulate_steps": "from an epoch boundary only",
    "data.num_workers": "",
    "data.on_bad_image": "",
    "eval.batch_size": "",
    "model.init_weights": "ignored when resuming",
    "model.backbone.pretrained": "ignored when resuming: the checkpoint holds the weights",
}


def resume_changes(saved: dict[str, Any], cfg: Config, epochs_done: int, where: str) -> list[str]:
    """Check ``cfg`` (the config and overrides given now) against ``saved`` (the checkpoint's
    config, a plain dict) before a run resumes from ``where``.

    Returns one line per applied change (keys of :data:`CHANGEABLE`). Keys absent from an older
    checkpoint's config are not compared.

    Raises:
        ConfigError: any other key differs (all of them named), or ``train.epochs`` is not
            above the ``epochs_done`` the run has finished.
    """
    old, new = flatten(saved), flatten(config_to_dict(cfg))
    changed = changed_keys(old, new)
    refused = [k for k in changed if k not in CHANGEABLE]
    if refused:
        raise ConfigError(
            f"--resume continues {where} with its own config, but "
            f"{show_changes(old, new, refused)} differ; drop the change, or start a new run "
            "with another --output-dir"
        )
    if cfg.train.epochs <= epochs_done:
        raise ConfigError(
            f"{where} has done {epochs_done} epochs and train.epochs is {cfg.train.epochs}: "
            f"nothing to resume; raise train.epochs to train on"
        )
    return [
        f"resume: {k} {old[k]!r} -> {new[k]!r}" + (f" ({CHANGEABLE[k]})" if CHANGEABLE[k] else "")
        for k in changed
    ]
