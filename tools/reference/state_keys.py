"""Writes the expected state-dict key lists of the four RetinaNet-GHM models.

The backbone comes from torchvision's ResNet (same key names and shapes as mmdetection's
"pytorch"-style ResNet/ResNeXt, fc removed); the FPN, head and GHM buffers are added by hand
from mmdetection's module structure (docs/MODEL.md §3). One line per tensor:
`key<TAB>dtype<TAB>shape<TAB>kind` with kind = parameter | buffer, in state-dict order.
Also writes `<model>.macs.txt`: convolution multiply-accumulates for a few input sizes, the
backbone counted with forward hooks and the FPN/head from the feature sizes.

Run: /usr/bin/python3 tools/reference/state_keys.py tests/GhmGen.Models.Tests/Fixtures/StateDicts
"""
import sys
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

MODELS = {
    "retinanet-ghm-r50-fpn": dict(layers=[3, 4, 6, 3]),
    "retinanet-ghm-r101-fpn": dict(layers=[3, 4, 23, 3]),
    "retinanet-ghm-x101-32x4d-fpn": dict(layers=[3, 4, 23, 3], groups=32, width_per_group=4),
    "retinanet-ghm-x101-64x4d-fpn": dict(layers=[3, 4, 23, 3], groups=64, width_per_group=4),
}


class ConvModule(nn.Module):
    def __init__(self, cin, cout, k, s=1, p=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, p)


class Fpn(nn.Module):
    def __init__(self):
        super().__init__()
        self.lateral_convs = nn.ModuleList([ConvModule(c, 256, 1) for c in (512, 1024, 2048)])
        self.fpn_convs = nn.ModuleList([ConvModule(256, 256, 3, 1, 1) for _ in range(3)]
                                       + [ConvModule(2048, 256, 3, 2, 1), ConvModule(256, 256, 3, 2, 1)])


class GhmBuffers(nn.Module):
    def __init__(self, bins):
        super().__init__()
        self.register_buffer("edges", torch.zeros(bins + 1))
        self.register_buffer("acc_sum", torch.zeros(bins))


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.loss_cls = GhmBuffers(30)
        self.loss_bbox = GhmBuffers(10)
        self.cls_convs = nn.ModuleList([ConvModule(256, 256, 3, 1, 1) for _ in range(4)])
        self.reg_convs = nn.ModuleList([ConvModule(256, 256, 3, 1, 1) for _ in range(4)])
        self.retina_cls = nn.Conv2d(256, 9 * 80, 3, 1, 1)
        self.retina_reg = nn.Conv2d(256, 9 * 4, 3, 1, 1)


def retinanet_macs(backbone, size):
    """Backbone by hooks; FPN and head from the feature sizes (docs/MODEL.md §2)."""
    body = nn.Sequential(backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool,
                         backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4)
    macs = 0
    x = torch.zeros(1, 3, *size)
    sizes = []
    with torch.no_grad():
        for i, m in enumerate(body):
            m_macs, x = conv_macs_seq(m, x)
            macs += m_macs
            if i >= 5:
                sizes.append((x.shape[1], x.shape[2], x.shape[3]))
    (c3, h3, w3), (c4, h4, w4), (c5, h5, w5) = sizes
    macs += 256 * (c3 * h3 * w3 + c4 * h4 * w4 + c5 * h5 * w5)           # laterals
    macs += 256 * 256 * 9 * (h3 * w3 + h4 * w4 + h5 * w5)                 # fpn_convs 0..2
    h6, w6 = (h5 - 1) // 2 + 1, (w5 - 1) // 2 + 1
    h7, w7 = (h6 - 1) // 2 + 1, (w6 - 1) // 2 + 1
    macs += 2048 * 256 * 9 * h6 * w6 + 256 * 256 * 9 * h7 * w7           # fpn_convs 3, 4
    pixels = h3 * w3 + h4 * w4 + h5 * w5 + h6 * w6 + h7 * w7
    macs += pixels * 9 * 256 * (8 * 256 + 720 + 36)                       # head on 5 levels
    return macs


def conv_macs_seq(module, x):
    total = [0]

    def hook(conv, _inp, out):
        total[0] += out.numel() * (conv.in_channels // conv.groups) * conv.kernel_size[0] * conv.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.Conv2d)]
    y = module(x)
    for h in handles:
        h.remove()
    return total[0], y


def main(out_dir):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, cfg in MODELS.items():
        backbone = ResNet(Bottleneck, **cfg)
        del backbone.fc
        parts = OrderedDict(backbone=backbone, neck=Fpn(), bbox_head=Head())
        lines = []
        counts = {}
        for part, module in parts.items():
            params = {k for k, _ in module.named_parameters()}
            counts[part] = sum(p.numel() for p in module.parameters())
            for key, t in module.state_dict().items():
                kind = "parameter" if key in params else "buffer"
                dtype = str(t.dtype).replace("torch.", "")
                lines.append(f"{part}.{key}\t{dtype}\t{list(t.shape)}\t{kind}")
        (out / f"{name}.txt").write_text("\n".join(lines) + "\n")
        macs = {f"{h}x{w}": retinanet_macs(backbone.eval(), (h, w)) for h, w in ((800, 1216), (512, 512), (96, 160))}
        (out / f"{name}.macs.txt").write_text("".join(f"{k}\t{v}\n" for k, v in macs.items()))
        print(name, "MACs", macs)
        print(name, len(lines), "keys", counts, "total", sum(counts.values()))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/GhmGen.Models.Tests/Fixtures/StateDicts")
