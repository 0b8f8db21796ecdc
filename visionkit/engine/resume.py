"""How a run begins in its output folder (fresh, resumed, or restarted), and resume that means
resume: the checkpoint's config wins, a change is applied and said, or refused in one line
naming the key.

A fresh run never writes over another run's files (:data:`RUN_FILES`); ``--resume`` continues
the folder's ``last.pth``, or starts the run again when it was killed before its first
checkpoint (:func:`start_run`).

A resumed run continues the run its checkpoint belongs to. Most of a config cannot change halfway
without making the run something else (the model, the data, the optimizer, the learning rate and
its schedule): those keys are refused. The keys of :data:`CHANGEABLE` only say where, how long and
in which precision the run goes on; they are applied, and each change is one line of the run's
output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visionkit.checkpoints.store import load_checkpoint
from visionkit.config.diff import changed_keys, flatten, show_changes
from visionkit.config.loader import config_to_dict
from visionkit.config.schema import Config
from visionkit.errors import ConfigError

# the files of a run; a fresh run refuses a folder holding any of them
RUN_FILES = ("best.pth", "config.yaml", "last.pth", "metrics.jsonl", "tensorboard")

CHANGEABLE = {
    "train.epochs": "the schedule is recomputed for the new total",
    "train.eval_every": "",
    "train.log_every": "",
    "train.device": "",
    "train.output_dir": "",
    "train.dist_backend": "",
    "train.find_unused_parameters": "",
    # float32 weights and optimizer state either way; the first lines say what it resolves to
    "train.amp": "the precision of the remaining steps",
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


@dataclass
class RunStart:
    """How a run begins in its output folder.

    Attributes:
        checkpoint: the ``last.pth`` a resumed run continues; None when it starts from the
            beginning.
        restart: resumed, but killed before its first checkpoint: it starts again, its logs cut.
        changes: the lines to print: each config change a resumption applies, or the restart's.
    """

    checkpoint: dict[str, Any] | None
    restart: bool
    changes: list[str]

    def log_position(self, iters_per_epoch: int) -> int | None:
        """The global iteration the metrics log continues from (the checkpoint's; 0 for a
        restart); None for a fresh run."""
        if self.checkpoint is None:
            return 0 if self.restart else None
        if "log_position" in self.checkpoint:
            return int(self.checkpoint["log_position"])
        epoch = int(self.checkpoint["epoch"])
        return epoch * iters_per_epoch + int(self.checkpoint.get("epoch_iteration", 0))


def start_run(out: Path, cfg: Config, resume: bool) -> RunStart:
    """How the run of ``cfg`` in ``out`` begins; ``resume``: ``--resume`` was given.

    Raises:
        ConfigError: a fresh run in a folder holding another run's files, or a resumption
            :func:`resume_changes` refuses.
        CheckpointError: ``--resume`` and ``out/last.pth`` cannot be read (or is missing from
            a folder without any run file).
    """
    found = sorted(n for n in RUN_FILES if (out / n).exists())
    # killed before its first checkpoint (a best.pth is never written alone: keep it)
    if resume and found and not {"last.pth", "best.pth"} & set(found):
        line = f"resume: {out} has no checkpoint yet; starting it from the beginning"
        return RunStart(None, True, [line])
    if resume:
        ckpt, changes = load_checkpoint(out / "last.pth"), []
        saved = ckpt.get("config")
        if isinstance(saved, dict):
            epochs_done = int(ckpt.get("epoch", 0))
            changes = resume_changes(saved, cfg, epochs_done, str(out / "last.pth"))
        return RunStart(ckpt, False, changes)
    if found:
        raise ConfigError(
            f"{out} already holds a run ({', '.join(found)}); pass --resume to "
            "continue it, or give another --output-dir"
        )
    return RunStart(None, False, [])
