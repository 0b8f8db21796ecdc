"""Convert box datasets between the COCO, Pascal VOC and YOLO layouts (``visionkit convert``).

Each split's reader (``data/build.detection_reader``: COCO, VOC, YOLO or the shapes dataset) is
read through its evaluation ground truth (``writers/common.source_images``) and written by the
target format's :class:`~visionkit.data.writers.common.Writer`: images copied byte for byte
(identical pixels), every file written atomically, annotation files after the images they
describe. What a format cannot hold is left out and counted in the :class:`ConvertReport`
(YOLO: crowd and difficult objects; VOC: crowd regions, boxes under 1 px). What reads the result
back is the report's ``overrides``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from visionkit.data.coco_checks import image_header
from visionkit.data.writers.coco import CocoWriter
from visionkit.data.writers.common import SourceImage, Writer, source_images
from visionkit.data.writers.voc import VocWriter
from visionkit.data.writers.yolo import YoloWriter
from visionkit.errors import ConfigError, DataError, UnreadableImageError, shown

WRITERS: dict[str, type[Writer]] = {"coco": CocoWriter, "voc": VocWriter, "yolo": YoloWriter}
FORMATS = tuple(WRITERS)


@dataclass
class ConvertReport:
    """What a conversion wrote: per split its ``images`` and ``objects``; the objects the
    format could not hold (``dropped``) or holds otherwise (``changed``), by reason; the image
    files not found (``missing``, left out); the ``overrides`` that train on the result."""

    format: str
    output: Path
    images: dict[str, int] = field(default_factory=dict)
    objects: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    changed: dict[str, int] = field(default_factory=dict)
    missing: list[Path] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)


def convert_datasets(
    datasets: Mapping[str, Any],
    to: str,
    output: str | Path,
    link: bool = False,
    progress: bool = False,
    on_bad_image: str = "skip",
) -> ConvertReport:
    """Write ``datasets`` (split name -> box reader) in format ``to`` under ``output``.

    Args:
        link: hard-link the images instead of copying them, where the file system allows.
        on_bad_image: an image file that is missing: ``"skip"`` leaves it out (counted in the
            report), ``"stop"`` raises.

    Raises:
        ConfigError: an unknown format. DataError: splits of different classes (one
            ``data.yaml`` holds one list), a split none of whose images exist, an image whose
            EXIF orientation the target's readers would apply otherwise than the source's
            (converting it would need its pixels turned), a non-JPEG image for VOC.
    """
    if to not in WRITERS:
        raise ConfigError(f"unknown dataset format {to!r}; expected one of {', '.join(FORMATS)}")
    names = {split: list(d.class_names) for split, d in datasets.items()}
    first = next(iter(names.values()), [])
    for split, split_names in names.items():
        if split_names != first:
            raise DataError(
                f"data.{split} has other classes than data.{next(iter(names))} ({split_names} vs "
                f"{first}): one converted dataset holds one list of classes"
            )
    writer = WRITERS[to](Path(output), link)
    report = ConvertReport(to, Path(output))
    for split, dataset in datasets.items():
        writer.begin(split, first, [int(c) for c in dataset.cat_ids])
        before, written = writer.objects, 0
        for image in tqdm(source_images(dataset), desc=f"{split} -> {to}", total=len(dataset),
                          disable=not progress, leave=False):  # fmt: skip
            if not _is_file(image.path):
                if on_bad_image == "stop":
                    raise UnreadableImageError(
                        f"cannot read image {shown(str(image.path))}: missing", str(image.path)
                    )
                report.missing.append(image.path)
                continue
            problem = orientation_problem(image, to)
            if problem:
                raise DataError(problem)
            writer.add(image)
            written += 1
        if not written:
            raise DataError(f"data.{split}: none of its {len(dataset)} image files exist")
        report.overrides += writer.end()
        report.images[split], report.objects[split] = written, writer.objects - before
    writer.finish()
    report.overrides.append(f"model.num_classes={len(first)}")
    report.dropped = {k: v for k, v in writer.dropped.items() if v}
    report.changed = {k: v for k, v in writer.changed.items() if v}
    return report


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def orientation_problem(image: SourceImage, to: str) -> str | None:
    """Why ``image`` (with an EXIF orientation) cannot be copied as it is into format ``to``,
    or None. YOLO readers always turn an image by its EXIF orientation; COCO and VOC readers read
    it as stored when the annotated size is the stored one. A copy keeps the pixels, so the boxes
    stay right only where both readers see the image the same way."""
    header = image_header(image.path)
    if header is None or header[2] not in range(2, 9):
        return None
    width, height, tag = header
    where = f"{shown(str(image.path))} (EXIF orientation {tag})"
    if to == "yolo" and not image.turned:
        return (
            f"{where}: its boxes describe the pixels as stored, but YOLO readers turn the image "
            "by its EXIF orientation; converting it to yolo would need its pixels turned"
        )
    if to != "yolo" and image.turned and (width, height) == (image.size[1], image.size[0]):
        return (
            f"{where}: its boxes describe the image as its orientation turns it, of the size "
            f"it has as stored, which {to} readers then read as stored; converting it would "
            "need its pixels turned"
        )
    return None


def count_lines(counts: Mapping[str, int]) -> list[str]:
    """``"3 crowd regions (YOLO has no crowd flag)"``, one per reason, largest first."""
    return [f"{n} {reason}" for reason, n in Counter(counts).most_common()]
