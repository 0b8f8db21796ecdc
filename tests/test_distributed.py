"""Distributed training: the sharded sampler, the LR rule, evaluators synchronized over 2 gloo
processes, and a real 2-process torchrun run (gloo, CPU) against one process with the combined
batch."""

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pycocotools.coco import COCO
from test_tools_e2e import ROOT, tiny_overrides

from visionkit.checkpoints import load_checkpoint
from visionkit.config import TrainConfig
from visionkit.engine.distributed import EpochSampler, ShardSampler
from visionkit.engine.optim import scaled_lr
from visionkit.evaluation import CocoEvaluator, Evaluators, SemSegEvaluator, VocEvaluator

# Runs tools/train.py as torchrun would, recording on each rank the image ids of every loss
# call and of the evaluation, then saving them with the final weights to $PROBE_DIR/rank<R>.pt.
PROBE = """
import os, runpy, sys
import torch
from visionkit.engine.trainer import Trainer
from visionkit.evaluation.coco_eval import CocoEvaluator
from visionkit.models.detectors.yolo_v1 import YOLOv1

seen, evaluated = [], []
loss, evaluate, train = YOLOv1.loss, CocoEvaluator.evaluate, Trainer.train

def recording_loss(self, images, targets):
    seen.append([int(t["image_id"]) for t in targets])
    return loss(self, images, targets)

def recording_evaluate(self):
    evaluated.extend(self.image_ids)
    return evaluate(self)

def saving_train(self):
    out = train(self)
    rank = os.environ.get("RANK", "0")
    state = {"model": self.model.state_dict(), "seen": seen, "evaluated": evaluated}
    torch.save(state, os.path.join(os.environ["PROBE_DIR"], f"rank{rank}.pt"))
    return out

YOLOv1.loss, CocoEvaluator.evaluate, Trainer.train = recording_loss, recording_evaluate, saving_train
sys.argv = sys.argv[1:]  # probe.py tools/train.py ARGS -> tools/train.py ARGS
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_epoch_sampler_shards_one_permutation_and_resumes_mid_epoch():
    single = list(EpochSampler(10, seed=3))
    shares = [list(EpochSampler(10, seed=3, rank=r, world_size=4)) for r in range(4)]
    assert [len(s) for s in shares] == [3, 3, 3, 3]  # 10 padded to 12
    # batch k of all ranks = batch k of one process: rank r holds position r, r + 4, ...
    interleaved = [s[j] for j in range(3) for s in shares]
    assert [i for i, _ in interleaved] == [i for i, _ in single + single[:2]]
    assert sorted(i for i, _ in interleaved[:10]) == list(range(10))  # disjoint but the padding
    # each position's augmentation seed: the same on any world size, distinct within the epoch
    assert interleaved[:10] == single and len({seed for _, seed in single}) == 10
    resumed = EpochSampler(10, seed=3, rank=1, world_size=4)
    resumed.set_epoch(0, start=4)  # one batch of 1 image consumed on each of the 4 ranks
    assert list(resumed) == shares[1][1:] and len(resumed) == 2
    resumed.set_epoch(1)
    assert list(resumed) != shares[1]  # another epoch, another permutation
    assert [list(ShardSampler(5, r, 2)) for r in range(2)] == [[0, 2, 4], [1, 3]]


def test_linear_lr_scaling_rule():
    cfg = TrainConfig(lr=0.01, lr_scaling="linear", accumulate_steps=2, base_batch_size=64)
    assert scaled_lr(cfg, batch_size=16, world_size=8) == pytest.approx(0.01 * 8 * 2 * 16 / 64)
    assert scaled_lr(TrainConfig(lr=0.01), batch_size=16, world_size=8) == 0.01  # "none"
    cfg = TrainConfig(lr=0.01, lr_scaling="linear")  # base 0: lr is one process's
    assert scaled_lr(cfg, batch_size=16, world_size=4) == pytest.approx(0.04)


def run_probe(tmp: Path, name: str, torchrun: bool, overrides: list[str]) -> dict:
    probe_dir = tmp / name
    probe_dir.mkdir()
    script = probe_dir / "probe.py"
    script.write_text(PROBE)
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd = [
        sys.executable, *(launcher if torchrun else []), str(script),
        str(ROOT / "tools" / "train.py"), "--config", str(ROOT / "visionkit" / "configs" / "yolo_v1_shapes.yaml"),
        "--output-dir", str(probe_dir / "out"), "--no-progress", "--device", "cpu", *overrides,
    ]  # fmt: skip
    env = {**os.environ, "PROBE_DIR": str(probe_dir), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {p.stem: torch.load(p, weights_only=True) for p in probe_dir.glob("rank*.pt")}


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_the_combined_batch(tmp_path):
    # no BatchNorm (LeNet, no extra head convs: batch statistics would differ), no augmentation
    # (each process draws its own), SGD (Adam would magnify rounding differences of tiny
    # gradients); the YOLO loss is a mean over the batch's images, as DDP's gradient average;
    # float32 (train.amp=auto is bf16 on a CPU with native bfloat16, whose rounding differs
    # between 1-image and 4-image batches far beyond the 1e-5 compared)
    common = [
        *tiny_overrides(tmp_path / "cache", epochs=2), "model.yolo.extra_convs=0", "train.eval_every=0",
        "train.amp=none",
        "train.optimizer=sgd", "train.lr=0.01", "data.augment.hflip=0", "data.augment.scale=0",
        "data.augment.translate=0", "data.augment.exposure=1", "data.augment.saturation=1",
    ]  # fmt: skip
    # per rank 1 image x 2 accumulated micro-batches (DDP's no_sync on the first) x 2 ranks ...
    ranks = run_probe(
        tmp_path, "ddp", True, [*common, "data.batch_size=1", "train.accumulate_steps=2"]
    )
    # ... is one step on 4 images in one process
    one = run_probe(tmp_path, "single", False, [*common, "data.batch_size=4"])["rank0"]
    r0, r1 = ranks["rank0"], ranks["rank1"]
    for epoch in range(2):  # 16 images: 8 loss calls of 1 image per rank and epoch
        ids0 = [i for ids in r0["seen"][8 * epoch : 8 * epoch + 8] for i in ids]
        ids1 = [i for ids in r1["seen"][8 * epoch : 8 * epoch + 8] for i in ids]
        assert not set(ids0) & set(ids1) and len(set(ids0) | set(ids1)) == 16
    for step in range(8):  # each optimizer step saw the images of the single process's step
        ddp_step = r0["seen"][2 * step : 2 * step + 2] + r1["seen"][2 * step : 2 * step + 2]
        assert sorted(i for ids in ddp_step for i in ids) == sorted(one["seen"][step])
    ckpt = load_checkpoint(tmp_path / "ddp" / "out" / "last.pth")
    for k, v in r0["model"].items():
        assert torch.equal(v, r1["model"][k]), k  # DDP kept the replicas identical
        assert torch.equal(v, ckpt["model"][k]), k  # and rank 0 wrote them
        torch.testing.assert_close(v, one["model"][k], rtol=1e-5, atol=1e-6, msg=k)
    # evaluation: each rank predicted its half; rank 0 scored all 8 validation images once
    assert sorted(r0["evaluated"]) == sorted(one["evaluated"]) and len(set(r0["evaluated"])) == 8
    assert r1["evaluated"] == []
    assert ckpt["layout"] == {"world_size": 2, "batch_size": 1, "accumulate_steps": 2}


def evaluation_samples(n: int = 7) -> tuple[COCO, list[dict], list[dict]]:
    """Ground truth of ``n`` 32x32 images with two classes, and predictions whose scores tie
    across images (VOC breaks ties by the order in which images were given)."""
    g = torch.Generator().manual_seed(0)
    images, anns, targets, preds = [], [], [], []
    for i in range(n):
        xy = torch.randint(0, 16, (3, 2), generator=g).float()
        boxes = torch.cat([xy, xy + torch.randint(4, 16, (3, 2), generator=g)], 1)
        labels = torch.randint(0, 2, (3,), generator=g)
        images.append({"id": i + 1, "width": 32, "height": 32})
        for k, (b, lb) in enumerate(zip(boxes.tolist(), labels.tolist(), strict=True)):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": 3 * i + k + 1, "image_id": i + 1, "category_id": 2 * lb + 1,
                         "bbox": [b[0], b[1], w, h], "area": w * h, "iscrowd": 0})  # fmt: skip
        sem_seg = torch.randint(0, 3, (32, 32), generator=g)
        targets.append({"image_id": i + 1, "sem_seg": sem_seg})
        jitter = torch.randint(-2, 3, (3, 4), generator=g).float()
        preds.append({
            "boxes": boxes + jitter, "scores": torch.tensor([0.9, 0.5, 0.5]), "labels": labels,
            "sem_seg": torch.where(torch.rand(32, 32, generator=g) < 0.7, sem_seg, 0),
        })  # fmt: skip
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns,
                    "categories": [{"id": 1, "name": "a"}, {"id": 3, "name": "b"}]}  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco, targets, preds


def evaluate_share(rank: int, world: int) -> tuple[dict, list]:
    """Feed rank's ShardSampler share to a box and a segmentation evaluator, synchronize them,
    and return rank 0's (or the single process's) metrics and COCO results."""
    coco, targets, preds = evaluation_samples()
    boxes = Evaluators([CocoEvaluator(coco, [1, 3]), VocEvaluator(coco, [1, 3])])
    seg = SemSegEvaluator(["background", "a", "b"])
    for i in ShardSampler(len(targets), rank, world):
        boxes.process([targets[i]], [preds[i]])
        seg.process([targets[i]], [preds[i]])
    boxes.synchronize()
    seg.synchronize()
    return boxes.evaluate() | seg.evaluate(), boxes.results


def synchronize_worker(rank: int, world: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        metrics, results = evaluate_share(rank, world)
        if rank == 0:
            torch.save({"metrics": metrics, "results": results}, out)
    finally:
        dist.destroy_process_group()


def test_evaluators_synchronized_over_two_processes_score_as_one(tmp_path):
    out = tmp_path / "rank0.pt"
    mp.spawn(synchronize_worker, (2, str(tmp_path / "store"), str(out)), nprocs=2)
    gathered = torch.load(out, weights_only=True)
    metrics, results = evaluate_share(0, 1)
    assert repr(gathered["metrics"]) == repr(metrics)  # repr: NaN equals NaN
    assert gathered["results"] == results  # the same COCO results, in the dataset's order
