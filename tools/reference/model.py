"""PyTorch reference of the four RetinaNet-GHM networks of docs/MODEL.md §1-§2.

Written from docs/MODEL.md (mmdetection is not imported); module names reproduce mmdetection's
state-dict keys (docs/MODEL.md §3) and their order (modules in registration order; in
`bbox_head` the GHM loss modules are built before the conv layers, as AnchorHead does).
Inference only: `build(name)` returns the network in eval mode, BN on running statistics.

    /usr/bin/python3 tools/reference/model.py        # checks key and parameter counts
"""
from __future__ import annotations

import sys
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

NUM_CLASSES = 80
NUM_ANCHORS = 9

# name -> (depth, groups, base_width)
VARIANTS: Dict[str, Tuple[int, int, int]] = {
    "retinanet-ghm-r50-fpn": (50, 1, 64),
    "retinanet-ghm-r101-fpn": (101, 1, 64),
    "retinanet-ghm-x101-32x4d-fpn": (101, 32, 4),
    "retinanet-ghm-x101-64x4d-fpn": (101, 64, 4),
}

STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}

# docs/MODEL.md §1: total, backbone, neck, head parameters; state-dict key count.
EXPECTED_PARAMETERS = {
    "retinanet-ghm-r50-fpn": (37_968_692, 23_508_032, 7_997_440, 6_463_220),
    "retinanet-ghm-r101-fpn": (56_960_820, 42_500_160, 7_997_440, 6_463_220),
    "retinanet-ghm-x101-32x4d-fpn": (56_589_364, 42_128_704, 7_997_440, 6_463_220),
    "retinanet-ghm-x101-64x4d-fpn": (95_866_932, 81_406_272, 7_997_440, 6_463_220),
}
EXPECTED_KEYS = {50: 358, 101: 664}


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, groups: int, base_width: int,
                 with_downsample: bool):
        super().__init__()
        width = planes if groups == 1 else (planes * base_width // 64) * groups
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = (nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False),
                                         nn.BatchNorm2d(out))
                           if with_downsample else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + identity)


class ResNet(nn.Module):
    """ResNet/ResNeXt, pytorch style (stride on the 3x3), returning C2..C5."""

    def __init__(self, depth: int, groups: int, base_width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        inplanes = 64
        for i, (blocks, planes, stride) in enumerate(zip(STAGE_BLOCKS[depth], (64, 128, 256, 512),
                                                         (1, 2, 2, 2))):
            layer = []
            for j in range(blocks):
                layer.append(Bottleneck(inplanes, planes, stride if j == 0 else 1, groups,
                                        base_width, with_downsample=(j == 0)))
                inplanes = planes * Bottleneck.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, 3, stride=2, padding=1)
        outs = []
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
            outs.append(x)
        return outs


class ConvModule(nn.Module):
    """mmcv's ConvModule without norm: the conv sits at `.conv`, optional ReLU after it."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0,
                 relu: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=True)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return F.relu(x) if self.relu else x


class FPN(nn.Module):
    """start level 1 (C3), 5 outputs, extra convs on the raw C5, no ReLU before fpn_convs.4."""

    def __init__(self, in_channels=(512, 1024, 2048), out_channels: int = 256):
        super().__init__()
        self.lateral_convs = nn.ModuleList([ConvModule(c, out_channels, 1) for c in in_channels])
        self.fpn_convs = nn.ModuleList([ConvModule(out_channels, out_channels, 3, padding=1)
                                        for _ in in_channels])
        self.fpn_convs.append(ConvModule(in_channels[-1], out_channels, 3, stride=2, padding=1))
        self.fpn_convs.append(ConvModule(out_channels, out_channels, 3, stride=2, padding=1))

    def forward(self, feats: List[torch.Tensor]) -> List[torch.Tensor]:
        c3, c4, c5 = feats[1], feats[2], feats[3]
        laterals = [conv(c) for conv, c in zip(self.lateral_convs, (c3, c4, c5))]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[2:], mode="nearest")
        outs = [self.fpn_convs[i](laterals[i]) for i in range(3)]
        p6 = self.fpn_convs[3](c5)
        outs.append(p6)
        outs.append(self.fpn_convs[4](p6))
        return outs


class GhmLossState(nn.Module):
    """Holds the GHM loss buffers (edges, acc_sum) so checkpoint keys match; no forward here."""

    def __init__(self, bins: int, last_edge_add: float = 0.0, last_edge_set: float = None):
        super().__init__()
        edges = torch.arange(bins + 1).float() / bins
        self.register_buffer("edges", edges)
        if last_edge_set is None:
            self.edges[-1] += last_edge_add
        else:
            self.edges[-1] = last_edge_set
        self.register_buffer("acc_sum", torch.zeros(bins))


class RetinaHead(nn.Module):
    def __init__(self, in_channels: int = 256, feat_channels: int = 256, stacked_convs: int = 4,
                 num_classes: int = NUM_CLASSES):
        super().__init__()
        # AnchorHead builds its losses before _init_layers: their buffers come first.
        self.loss_cls = GhmLossState(30, last_edge_add=1e-6)
        self.loss_bbox = GhmLossState(10, last_edge_set=1e3)
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        for i in range(stacked_convs):
            cin = in_channels if i == 0 else feat_channels
            self.cls_convs.append(ConvModule(cin, feat_channels, 3, padding=1, relu=True))
            self.reg_convs.append(ConvModule(cin, feat_channels, 3, padding=1, relu=True))
        self.retina_cls = nn.Conv2d(feat_channels, NUM_ANCHORS * num_classes, 3, padding=1)
        self.retina_reg = nn.Conv2d(feat_channels, NUM_ANCHORS * 4, 3, padding=1)

    def forward_single(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        cls_feat, reg_feat = x, x
        for conv in self.cls_convs:
            cls_feat = conv(cls_feat)
        for conv in self.reg_convs:
            reg_feat = conv(reg_feat)
        return self.retina_cls(cls_feat), self.retina_reg(reg_feat)

    def forward(self, feats: List[torch.Tensor]) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        cls_scores, bbox_preds = [], []
        for f in feats:
            c, r = self.forward_single(f)
            cls_scores.append(c)
            bbox_preds.append(r)
        return cls_scores, bbox_preds


class RetinaNetGhm(nn.Module):
    def __init__(self, name: str):
        super().__init__()
        depth, groups, base_width = VARIANTS[name]
        self.name = name
        self.depth = depth
        self.backbone = ResNet(depth, groups, base_width)
        self.neck = FPN()
        self.bbox_head = RetinaHead()

    def forward(self, x: torch.Tensor) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """x [N,3,H,W] -> (5 cls maps [N,720,h,w], 5 reg maps [N,36,h,w]) for P3..P7."""
        return self.bbox_head(self.neck(self.backbone(x)))

    def forward_with_intermediates(self, x: torch.Tensor):
        c = self.backbone(x)
        p = self.neck(c)
        cls, reg = self.bbox_head(p)
        return c, p, cls, reg


def build(name: str) -> RetinaNetGhm:
    if name not in VARIANTS:
        raise ValueError(f"unknown model '{name}'; known: {', '.join(VARIANTS)}")
    return RetinaNetGhm(name).eval()


def parameter_counts(model: RetinaNetGhm) -> Tuple[int, int, int, int]:
    def count(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())
    return count(model), count(model.backbone), count(model.neck), count(model.bbox_head)


def check(model: RetinaNetGhm) -> None:
    keys = len(model.state_dict())
    assert keys == EXPECTED_KEYS[model.depth], (model.name, keys)
    counts = parameter_counts(model)
    assert counts == EXPECTED_PARAMETERS[model.name], (model.name, counts)
    sd = model.state_dict()
    shapes = {k: list(sd[k].shape) for k in ("bbox_head.loss_cls.edges", "bbox_head.loss_cls.acc_sum",
                                             "bbox_head.loss_bbox.edges", "bbox_head.loss_bbox.acc_sum")}
    assert shapes == {"bbox_head.loss_cls.edges": [31], "bbox_head.loss_cls.acc_sum": [30],
                      "bbox_head.loss_bbox.edges": [11], "bbox_head.loss_bbox.acc_sum": [10]}, shapes


def main() -> int:
    for name in VARIANTS:
        model = build(name)
        check(model)
        total, backbone, neck, head = parameter_counts(model)
        print(f"{name}: keys {len(model.state_dict())}, parameters {total:,} "
              f"(backbone {backbone:,}, neck {neck:,}, head {head:,}) OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
