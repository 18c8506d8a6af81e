#!/usr/bin/python3
"""The whole detection pipeline in PyTorch + OpenCV, for GhmGen's end-to-end test:

    /usr/bin/python3 tools/reference/detect_pipeline.py

PNG fixture images -> cv2 decode (RGB) -> keep-ratio resize to fit (200, 120) with INTER_LINEAR
-> mmcv normalization -> zero padding to a multiple of 32 -> the seeded R-50 reference model
(model.py + seeded_weights.py) in float64 -> docs/MODEL.md §7 post-processing (postprocess.py,
torchvision batched_nms). The small fit (instead of 1333x800) keeps the test fast; every step is
the same code path. Writes tests/GhmGen.Models.Tests/Fixtures/Pipeline/detections.json.
"""
import json
import os

import cv2
import numpy as np
import torch

import imaging
import model as reference_model
import postprocess
import seeded_weights

HERE = os.path.dirname(__file__)
IMAGES = os.path.join(HERE, '..', '..', 'tests', 'GhmGen.Runtime.Tests', 'Fixtures', 'Imaging')
OUT = os.path.join(HERE, '..', '..', 'tests', 'GhmGen.Models.Tests', 'Fixtures', 'Pipeline')
FIT = (200, 120)
MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]


def main():
    net = reference_model.build('retinanet-ghm-r50-fpn')
    seeded_weights.load_seeded(net)
    net = net.double().eval()
    results = {"fit": list(FIT), "model": "retinanet-ghm-r50-fpn", "images": []}
    for name in ['img40x61.png', 'img53x37.png']:
        bgr = cv2.imread(os.path.join(IMAGES, name), cv2.IMREAD_COLOR)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        nw, nh = imaging.keep_ratio_size(w, h, FIT)
        resized = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
        normalized = imaging.imnormalize(resized, MEAN, STD)
        ph, pw = (nh + 31) // 32 * 32, (nw + 31) // 32 * 32
        padded = np.zeros((ph, pw, 3), np.float32)
        padded[:nh, :nw] = normalized
        x = torch.from_numpy(padded.transpose(2, 0, 1)[None].astype(np.float64))
        with torch.no_grad():
            cls, reg = net(x)
        sizes = [(c.shape[2], c.shape[3]) for c in cls]
        boxes, scores, labels, *_ = postprocess.postprocess(
            [c[0].float() for c in cls], [r[0].float() for r in reg], sizes, (nh, nw),
            (np.float32(nw / w), np.float32(nh / h)))
        results["images"].append({
            "image": name, "resized": [nh, nw], "padded": [ph, pw],
            "detections": [[*map(float, b), float(s), int(l)] for b, s, l in zip(boxes, scores, labels)],
        })
        print(name, (h, w), '->', (nh, nw), 'padded', (ph, pw), len(scores), 'detections, top score', float(scores[0]))
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, 'detections.json'), 'w') as f:
        json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
