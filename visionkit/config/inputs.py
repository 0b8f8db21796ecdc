"""What a config makes a command read, by role: the inputs of the output rule
(:func:`visionkit.io.outputs.check_outputs`), which no output may write over or into."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from visionkit.config.loader import config_files
from visionkit.config.schema import Config


def config_inputs(
    path: str | Path | None,
    cfg: Config | None = None,
    splits: Sequence[str] = (),
    flag: str = "--config",
) -> dict[str, str | Path]:
    """Role -> path read: the config file (as ``flag``) and its ``base:`` file, then for each
    split of ``splits`` (``"train"``, ``"val"``) that ``cfg`` reads: ``data.<split>.root`` (a
    COCO image folder, a VOCdevkit, a YOLO data.yaml and its folder; not a shapes dataset's, a
    cache that visionkit writes itself), ``data.<split>.ann_file`` and ``data.<split>.proposals.file``. Empty ones are left
    out."""
    found: dict[str, str | Path] = {}
    if path is not None:
        files = config_files(path)
        found[flag] = files[0]
        if len(files) > 1:
            found[f"{flag}'s base"] = files[1]
    for split in splits if cfg is not None else ():
        data = getattr(cfg.data, split)
        key = f"data.{split}"
        if data.type != "shapes" and data.root:
            found[f"{key}.root"] = data.root
        if data.type == "yolo" and data.root and not Path(data.root).is_dir():
            found[f"{key}.root's folder"] = Path(data.root).parent  # the data.yaml's dataset
        if data.ann_file:
            found[f"{key}.ann_file"] = data.ann_file
        if data.proposals.method == "file" and data.proposals.file:
            found[f"{key}.proposals.file"] = data.proposals.file
    return found
