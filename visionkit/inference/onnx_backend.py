"""Run an exported ``.onnx`` file with onnxruntime, as ``predictor.Predictor`` runs a checkpoint
(the onnxruntime backend of ``backend.PredictorBackend``): RGB arrays in, per-image results in
original pixels out.

Everything comes from the file's metadata (written by ``visionkit.export.onnx``, read by
``visionkit.export.metadata``): the model's :class:`~visionkit.models.preprocess.Preprocessor`
is rebuilt from the stored settings with an identity normalization (the graph normalizes), so
resizing, padding and the way back are the model's own code; given-proposal detectors get
:class:`~visionkit.models.proposers.GivenProposals`' selective search per image, as their
``predict`` does. Mask R-CNN's ``masks`` (``(D, 1, M, M)`` probabilities over each box) are
pasted into the original image after the graph, with the boxes mapped back, by the model's own
``paste_masks`` (threshold 0.5), as its ``predict`` pastes them. FCN's results come from the
graph's ``logits`` through ``ImageBatch.postprocess`` (resized to the original image, then arg-maxed, as
the model's ``predict``); its ``sem_seg`` output is the label map in input pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from visionkit.config.schema import Config
from visionkit.errors import CheckpointError
from visionkit.export.metadata import read_metadata
from visionkit.inference.backend import PredictorBackend
from visionkit.io.image import image_to_uint8
from visionkit.models.poolers import boxes_to_rois
from visionkit.models.preprocess import ImageBatch, Preprocessor
from visionkit.models.proposers import GivenProposals
from visionkit.structures.masks import paste_masks

# what config= and overrides may change in visionkit.load("model.onnx"): the rest is in the graph
ONNX_ACCEPTS = (
    "an ONNX file's model is fixed in its graph: it takes only score_thresh (load, predict, "
    "--score-thresh), data.* and eval.* settings (evaluate) and train.device"
)


def read_session(
    path: str | Path, providers: Sequence[str] | None = None, threads: int | None = None
) -> tuple[Any, dict[str, Any], Config]:
    """An ``onnxruntime.InferenceSession`` of ``path``, its visionkit metadata record and the
    config the record holds (``visionkit.export.metadata``, checked against the graph); a one-line
    CheckpointError for a missing, corrupt or foreign file or a record that does not fit it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    # no busy-waiting between runs: the resizing and mapping back run in torch's threads right
    # after each run, and spinning onnxruntime threads took their cores (FCN: 0.6x eager's speed)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such ONNX file")
    try:
        session = ort.InferenceSession(
            str(path), options, providers=list(providers or ["CPUExecutionProvider"])
        )
    except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable ONNX model ({first[:200]})") from None
    return (session, *read_metadata(session, path))


class OnnxPredictor(PredictorBackend):
    """An exported model under onnxruntime
    (:class:`~visionkit.inference.backend.PredictorBackend`).

    Args:
        path: a ``.onnx`` file written by :func:`visionkit.export.export_onnx`.
        score_thresh: detections scoring below it are dropped (after the graph's own threshold).
        providers: onnxruntime execution providers (default: the CPU's).
        threads: onnxruntime's intra-op threads (default: its own choice, one per core).

    Attributes:
        task, class_names, cat_ids, score_thresh, device (``cpu``: where results are), model
        (None: the model is the graph), config (the resolved config the file holds), meta (the
        whole record, checked against the graph: ``visionkit.export.metadata``), path.
    """

    def __init__(
        self,
        path: str | Path,
        score_thresh: float = 0.3,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> None:
        self.session, self.meta, self.config = read_session(path, providers, threads)
        meta, self.path = self.meta, Path(path)
        self.task, self.model = meta["task"], None
        self.class_names, self.cat_ids = list(meta["class_names"]), list(meta["cat_ids"])
        self.score_thresh, self.device = score_thresh, torch.device("cpu")
        p = meta["input"]
        self.uint8 = p["dtype"] == "uint8"
        self.preprocess = Preprocessor(
            p["resize"], (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), p["input_size"], p["min_size"],
            p["max_size"], p["size_divisor"], self.config.model.resize.rounding,
        )  # fmt: skip
        ss = self.config.model.selective_search
        self.proposals = GivenProposals(ss.mode, ss.max_proposals)

    @property
    def predict_extras(self) -> tuple[str, ...]:
        """``("proposals",)`` when the graph takes proposals (Fast R-CNN, SPPNet, R-CNN)."""
        return ("proposals",) if "proposals" in self.meta["inputs"] else ()

    def inputs(
        self, images: Sequence[Tensor], proposals: Sequence[Tensor] | None = None
    ) -> tuple[ImageBatch, dict[str, np.ndarray]]:
        """``(3, H_i, W_i)`` float RGB images in ``[0, 1]`` -> their batch (resized and padded by
        the model's Preprocessor, not normalized) and the graph's input arrays. Given-proposal
        models: per image ``(K_i, 4)`` xyxy ``proposals`` in its pixels, or None: selective
        search on each image."""
        given = self.proposals(images, proposals) if "proposals" in self.meta["inputs"] else None
        batch = self.preprocess(images)
        pixels = batch.tensor
        if self.uint8:
            pixels = image_to_uint8(pixels)
        feed = {"images": pixels.numpy(), "image_sizes": batch.image_sizes.long().numpy()}
        if given is not None:
            feed["proposals"] = boxes_to_rois(batch.clip_to_input(given)).numpy()
        return batch, {name: feed[name] for name in self.meta["inputs"]}

    @staticmethod
    def _label_maps(batch: ImageBatch, outputs: dict[str, np.ndarray]) -> list[dict[str, Tensor]]:
        """Per image ``sem_seg`` ``(H_i, W_i)`` int64: the graph's arg-max cut to the image where
        it was not resized; else its logits resized by ``batch.postprocess``, made channels-last
        first (an arg-max over the channel planes of a ``(C, H, W)`` array is ~10x slower)."""
        logits, labels = torch.from_numpy(outputs["logits"]), torch.from_numpy(outputs["sem_seg"])
        resized = [
            batch.image_sizes[i].long().tolist() != batch.original_sizes[i].long().tolist()
            for i in range(len(logits))
        ]
        results = batch.postprocess([
            {"logits": logits[i : i + 1].contiguous(memory_format=torch.channels_last)} if r else {}
            for i, r in enumerate(resized)
        ])  # fmt: skip
        for i, r in enumerate(resized):
            h, w = (int(v) for v in batch.image_sizes[i].tolist())
            results[i] = {"sem_seg": results[i]["sem_seg"] if r else labels[i, :h, :w]}
        return results

    def predict(
        self, images: Sequence[Tensor], proposals: Sequence[Tensor] | None = None
    ) -> list[dict[str, Tensor]]:
        """The graph on ``(3, H_i, W_i)`` float RGB tensors in ``[0, 1]``, with the given-proposal
        models' optional ``proposals`` (per image ``(K_i, 4)`` xyxy in its pixels), mapped back
        to the images' pixels: :meth:`PredictorBackend.predict` (every detection the graph
        gives; :meth:`__call__` applies ``score_thresh``)."""
        batch, feed = self.inputs(images, proposals)
        try:
            raw = self.session.run(None, feed)
        except Exception as e:  # onnxruntime's own types: a graph its metadata misdescribes
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(
                f"{self.path}: onnxruntime refused the inputs ({first[:200]})"
            ) from None
        outputs = dict(zip(self.meta["outputs"], raw, strict=True))
        if self.task == "sem_seg":
            return self._label_maps(batch, outputs)
        out = {k: torch.from_numpy(v) for k, v in outputs.items()}
        n = len(self.class_names)
        bad = out["labels"][(out["labels"] < 0) | (out["labels"] >= n)]
        if len(bad):  # metadata of fewer classes than the graph scores
            raise CheckpointError(
                f"{self.path}: its graph gives label {int(bad[0])}, but its metadata names {n} "
                f"classes (labels 0..{n - 1})"
            )
        mine = [out["batch_index"] == i for i in range(len(images))]
        results = batch.postprocess(
            [{k: out[k][m] for k in ("boxes", "scores", "labels")} for m in mine]
        )
        if "masks" in out:  # pasted with the boxes in the image's pixels, as predict pastes
            for r, m, (h, w) in zip(results, mine, batch.original_sizes.tolist(), strict=True):
                r["masks"] = paste_masks(out["masks"][m], r["boxes"], int(h), int(w))
        return results
