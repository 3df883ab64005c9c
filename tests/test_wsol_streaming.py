"""The metrics as a training loop uses them (tdviz.wsol.streaming.WsolMetrics) equal `tdviz wsol`'s."""

import numpy as np
import torch

from tdviz.cam import step_cams
from tdviz.images import Preprocess, read_image
from tdviz.models.demo_zoo import load_demo_model
from tdviz.wsol.evaluate import WsolConfig, demo_wsol_dataset, run_wsol
from tdviz.wsol.metrics import load_gt_mask
from tdviz.wsol.scoremaps import resize_boxes_wsol
from tdviz.wsol.streaming import WsolMetrics


def test_streaming_metrics_equal_the_cli_run(tmp_path):
    data = demo_wsol_dataset(40, workers=1)
    model = load_demo_model("demo_resnet_tdjoint")
    res = run_wsol({"td": model}, data, tmp_path / "run", WsolConfig(protocols=("wsol",), batch_size=16), workers=0,
                   progress=False)
    pre = Preprocess(mode="resize")
    metric, halves = WsolMetrics(threads=2), [WsolMetrics(threads=1), WsolMetrics(threads=1)]
    for start in range(0, len(data.samples), 16):
        batch = data.samples[start:start + 16]
        images = [read_image(s.path, exif=False) for s in batch]
        x = torch.stack([pre(img) for img in images])
        labels = torch.tensor([s.label for s in batch])
        raw = step_cams(model, x, classes=[0], append_labels=labels, normalize=False).raw[:, 1, -1]  # step 2, GT
        targets = []
        for s, img in zip(batch, images):
            fg, ignore = load_gt_mask(s.mask_paths, s.ignore_path)
            targets.append({"boxes": torch.from_numpy(resize_boxes_wsol(s.boxes, img.shape[1], img.shape[0])),
                            "mask": torch.from_numpy(fg), "ignore": torch.from_numpy(ignore)})
        metric.update(raw, targets)
        halves[(start // 16) % 2].update(raw.numpy(), targets)
    got, want = metric.compute(), res["models"]["td"]["2"]
    for key in ("maxboxacc_v2", "maxboxacc", "pxap", "n_boxes", "n_masks"):
        assert got[key] == want[key], key
    assert {str(k): v for k, v in got["maxboxacc_v2_per_delta"].items()} == want["maxboxacc_v2_per_delta"]
    halves[0].merge(halves[1])  # two processes' counts, added
    assert halves[0].compute() == got
    restored = WsolMetrics()
    restored.load_state(metric.state())
    assert restored.compute() == got
    metric.reset()
    assert metric.compute() == {}
    metric.update(np.zeros((1, 7, 7)), [{"boxes": np.zeros((0, 4))}])  # no GT box: not counted
    assert metric.compute() == {}
