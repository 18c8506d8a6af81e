"""PyTorch reference of the demo detector `ghm-demo-r18-fpn` (models/GhmGen.Models/Detectors.cs).

A half-width ResNet-18 (basic blocks, 32..256 channels, the 7x7/2 stem and 3x3/2 max-pool), the
FPN of model.py with C3..C5 of 64, 128 and 256 channels and 64 output channels, and model.py's
RetinaHead with 64 channels, 2 convs per branch and 4 classes; P3..P7. Module names give the C#
state-dict keys. Nothing is frozen. Its batch norms train with batch statistics (NormEval = false in
C#, mmdetection norm_eval=False): train() mode while training, so each forward normalises with the
batch's mean and biased variance and updates the running statistics (momentum 0.1); eval() mode
(running statistics) for inference, which build() returns.

    /usr/bin/python3 tools/reference/demo_model.py       # checks key and parameter counts
"""
from __future__ import annotations

import sys
from typing import List

import torch
import torch.nn.functional as F
from torch import nn

import model as reference_model

NAME = "ghm-demo-r18-fpn"
WIDTH = 32
CHANNELS = 64
CLASSES = 4
CONVS = 2
NORM_EVAL = False           # batch norm trains with batch statistics (C#: NormEval = false)


class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int, with_downsample: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = (nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                                         nn.BatchNorm2d(planes))
                           if with_downsample else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = self.downsample(x) if self.downsample is not None else x
        return F.relu(out + identity)


class ResNet18(nn.Module):
    def __init__(self, width: int = WIDTH):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        inplanes = width
        for i, planes in enumerate((width, 2 * width, 4 * width, 8 * width)):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(inplanes, planes, stride, i > 0), BasicBlock(planes, planes, 1, False)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            inplanes = planes

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, stride=2, padding=1)
        outs = []
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
            outs.append(x)
        return outs                 # C2..C5; the FPN takes [1:]


class DemoDetector(nn.Module):
    def __init__(self):
        super().__init__()
        self.name = NAME
        self.backbone = ResNet18()
        self.neck = reference_model.FPN(in_channels=(2 * WIDTH, 4 * WIDTH, 8 * WIDTH), out_channels=CHANNELS)
        self.bbox_head = reference_model.RetinaHead(CHANNELS, CHANNELS, CONVS, num_classes=CLASSES)

    def forward(self, x: torch.Tensor):
        return self.bbox_head(self.neck(self.backbone(x)))


def build() -> DemoDetector:
    return DemoDetector().eval()


def main() -> int:
    net = build()
    total = sum(p.numel() for p in net.parameters())
    print(f"{NAME}: keys {len(net.state_dict())}, parameters {total:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
