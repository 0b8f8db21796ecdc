"""The inference loop: read sources in a background thread, predict in batches, write outputs."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor
from tqdm import tqdm

from visionkit.inference.backend import BelowThreshold, PredictorBackend
from visionkit.inference.sources import (
    Frame,
    Skipped,
    Source,
    prefetch,
    read_frames,
    video_frame_count,
)
from visionkit.inference.writers import (
    CocoResults,
    OutputNames,
    VideoWriter,
    Window,
    write_image,
    write_label_png,
)
from visionkit.utils.draw import class_colors, draw_prediction
from visionkit.utils.warn import warn, warnings_part


@dataclass
class InferenceSummary:
    """What a run did: images and video frames processed, sources skipped, wall time."""

    output: Path
    images: int = 0
    frames: int = 0
    videos: int = 0
    skipped: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    def line(self) -> str:
        """One line for the end of a run."""
        parts = [_count(self.images, "image")] if self.images or not self.videos else []
        if self.videos:
            parts.append(f"{_count(self.frames, 'frame')} of {_count(self.videos, 'video')}")
        done = " and ".join(parts)
        rate = (self.images + self.frames) / self.seconds if self.seconds > 0 else 0.0
        stop = "interrupted after" if self.interrupted else "done:"
        skipped = f"; {self.skipped} skipped (see above)" if self.skipped else ""
        return (
            f"{stop} {done} in {self.seconds:.1f} s ({rate:.1f}/s){skipped}; "
            f"outputs in {self.output}{warnings_part()}"
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _batches(
    records: Iterable[Frame | Skipped], batch_size: int, on_skip: Callable[[Skipped], None]
) -> Iterator[list[Frame]]:
    """Frames in batches of ``batch_size`` (webcam frames alone: no waiting for the next);
    skipped records go to ``on_skip`` as they come."""
    batch: list[Frame] = []
    for r in records:
        if isinstance(r, Skipped):
            on_skip(r)
            continue
        batch.append(r)
        if len(batch) == batch_size or r.source.kind == "webcam":
            yield batch
            batch = []
    if batch:
        yield batch


def predict_frames(
    predictor: PredictorBackend,
    sources: list[Source],
    batch_size: int,
    on_skip: Callable[[Skipped], None],
    below: BelowThreshold | None = None,
) -> Iterator[tuple[Frame, dict[str, Tensor]]]:
    """Each readable image or video frame of ``sources`` with its prediction (``predictor``'s
    output for it), predicted ``batch_size`` at a time; ``below`` (detection models) gathers
    what the empty-result hint says (:class:`~visionkit.inference.backend.BelowThreshold`).

    A background thread decodes the next frames (at most ``2 * batch_size`` ahead) while the model
    works on a batch; only that batch and the decoded queue are held, so memory stays flat over a
    long video. Unreadable sources go to ``on_skip`` as they come. Closing the generator stops
    the thread and releases open videos.
    """
    with contextlib.closing(prefetch(read_frames(sources), depth=2 * batch_size)) as stream:
        for batch in _batches(stream, batch_size, on_skip):
            outputs = predictor([f.image for f in batch], below=below)
            yield from zip(batch, outputs, strict=True)


def below_threshold(predictor: PredictorBackend) -> BelowThreshold | None:
    """A fresh record for the empty-result hint of one run or ``predict`` call; None for a
    segmentation model (no scores)."""
    return BelowThreshold(predictor.score_thresh) if predictor.task != "sem_seg" else None


class _Outputs:
    """Writes each annotated image or frame, the label maps and the JSON files."""

    def __init__(self, predictor: PredictorBackend, folder: Path) -> None:
        self.p, self.folder = predictor, folder
        self.colors = class_colors(len(predictor.class_names))
        self.names = OutputNames()
        self.coco = CocoResults(predictor.class_names, predictor.cat_ids)
        self.video: VideoWriter | None = None
        self.video_source: Source | None = None
        self.videos = 0  # video files written

    def annotate(self, frame: Frame, prediction: dict[str, Tensor]) -> np.ndarray:
        """Record ``prediction`` (``images.json``, ``predictions.json``: masks as RLE, the
        frame's pasted masks are not kept) and draw it on a copy of the frame's image."""
        image = frame.image
        image_id = self.coco.add_image(frame.source.name, image.shape[:2], frame.index)
        if self.p.task != "sem_seg":
            self.coco.add_detections(image_id, prediction)
        return draw_prediction(image, prediction, self.p.class_names, self.colors)

    def write(self, frame: Frame, prediction: dict[str, Tensor], annotated: np.ndarray) -> None:
        """An image's file(s), or the frame appended to its video's file."""
        if frame.index is None:
            stem = self.names.stem(Path(frame.source.path).stem)
            write_image(self.folder / f"{stem}.jpg", annotated)
            if self.p.task == "sem_seg":
                write_label_png(self.folder / f"{stem}_label.png", prediction["sem_seg"].numpy())
            return
        if self.video_source != frame.source:
            self.close_video()
            name = f"webcam{frame.source.path}" if frame.source.kind == "webcam" else None
            stem = self.names.stem(name or Path(frame.source.path).stem)
            h, w = annotated.shape[:2]
            self.video = VideoWriter(self.folder / f"{stem}.mp4", frame.fps, (w, h))
            self.video_source, self.videos = frame.source, self.videos + 1
        self.video.write(annotated)

    def close_video(self, failed: bool = False) -> None:
        """Finish the open video (renamed into place), or remove it when the run ``failed``."""
        video, self.video, self.video_source = self.video, None, None
        if video is not None and failed:
            video.discard()
        elif video is not None:
            video.close()


def run_inference(
    predictor: PredictorBackend,
    sources: list[Source],
    output: Path,
    batch_size: int = 8,
    window: Window | None = None,
    progress: bool = True,
) -> InferenceSummary:
    """Predict every image and video frame of ``sources`` and write the results to ``output``.

    Writes ``<stem>.jpg`` per image (boxes with class names and scores, over filled and
    outlined masks for instance segmentation, or for segmentation a class-colour overlay plus
    ``<stem>_label.png``, the label values), ``<stem>.mp4`` per video (same frame rate, size and
    frame count; ``webcam<N>.mp4`` for a webcam), ``images.json`` and, for detection and
    instance segmentation, ``predictions.json``
    (:class:`~visionkit.inference.writers.CocoResults`; masks as compressed RLE). Each frame's
    masks are drawn and encoded as it comes, then dropped: memory stays flat over a long video.
    Unreadable sources are reported on stderr (one line each) and counted in ``skipped``. Ctrl+C
    (or ``q`` in the window) stops early; what was done is still written. When the score
    threshold left images without any detection though the model scored some below it, one
    ``warning:`` line at the end says so (the highest score dropped, the ``--score-thresh`` that
    shows it).
    """
    output.mkdir(parents=True, exist_ok=True)
    summary, out = InferenceSummary(output), _Outputs(predictor, output)
    below = below_threshold(predictor)
    counts = [1 if s.kind == "image" else video_frame_count(s) for s in sources]
    total = None if None in counts else sum(counts)
    videos = [s for s in sources if s.kind != "image"]
    bar = tqdm(
        total=total, unit="frame" if videos else "img", desc="infer", disable=not progress,
        dynamic_ncols=True,
    )  # fmt: skip

    def skip(r: Skipped) -> None:
        summary.skipped += 1
        if r.source.kind == "image":
            bar.update(1)
        tqdm.write(f"skipped: {r.reason}", file=sys.stderr)

    def process() -> None:
        frames = predict_frames(predictor, sources, batch_size, skip, below)
        with contextlib.closing(frames) as results:
            for frame, prediction in results:
                annotated = out.annotate(frame, prediction)
                out.write(frame, prediction, annotated)
                if frame.index is None:
                    summary.images += 1
                else:
                    summary.frames += 1
                bar.update(1)
                if window is not None and not window.show(annotated, frame.index is not None):
                    return

    start = time.perf_counter()
    try:
        process()
    except KeyboardInterrupt:  # what was done is kept: a shorter video, still whole
        summary.interrupted = True
    except BaseException:
        out.close_video(failed=True)
        raise
    finally:
        bar.close()
        out.close_video()
        if window is not None:
            window.close()
    hint = below.hint("--score-thresh ") if below is not None else None
    if hint:
        warn(hint)
    if summary.images or summary.frames:  # nothing read: a previous run's JSON files stay
        out.coco.save(output, with_predictions=predictor.task != "sem_seg")
    summary.videos = out.videos
    summary.seconds = time.perf_counter() - start
    return summary
