#!/usr/bin/env python3
"""ohem-studio's training step written again in plain PyTorch, to hold `ohem-studio bench` to
what the same libtorch kernels cost from Python.

The network mirrors src/detector/: EfficientNet-Lite (TF "SAME" padding, ReLU6, no
squeeze-and-excite, BatchNorm on stored statistics with eps 1e-3) whose stem and first three
stages run without gradient; a neck (1x1 laterals on the stride-16 and stride-32 maps, nearest
upsampling, a 3x3 convolution, 64 channels); RoIAlign 7x7 with 2x2 samples per bin through
grid_sample; two fully connected layers of 256; class scores and four box deltas. Loss per RoI:
cross-entropy plus smooth-L1 (beta 1) on the deltas of positives. AdamW (weight decay 1e-4, the
backbone at 0.3 of the learning rate). OHEM: the backbone once per image, the head over every RoI
under no_grad, NMS by loss at IoU 0.7 among the RoIs of each image, the top M trained. Full
batch: every RoI trained.

`ohem-studio bench --reference` exports the very batches it timed (pixels, RoIs, labels and
targets of every image) and passes them here with --batches, so both time the same work. Keep
this file in step with src/detector when the network changes.

`make bench` runs it with the torch that `make` fetched.
"""
import argparse
import json
import math
import struct
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

LAYOUTS = {  # channels and repeats of the seven stages
    "efficientnet-lite0": ([16, 24, 40, 80, 112, 192, 320], [1, 2, 2, 3, 3, 4, 1], 32, 6, 3),
    "efficientnet-lite1": ([16, 24, 40, 80, 112, 192, 320], [1, 3, 3, 4, 4, 5, 1], 32, 6, 3),
    "efficientnet-lite2": ([16, 24, 48, 88, 120, 208, 352], [1, 3, 3, 4, 4, 5, 1], 32, 6, 3),
    "small": ([16, 24, 32, 48, 64, 96, 128], [1] * 7, 16, 4, 0),
}
KERNELS = [3, 3, 5, 3, 5, 5, 3]
STRIDES = [1, 2, 2, 2, 1, 2, 1]
DTYPES = {"F32": torch.float32, "I64": torch.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = bytearray(data[8 + n + a:8 + n + b])
        out[name] = torch.frombuffer(raw, dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


class SameConv(nn.Conv2d):
    def forward(self, x):
        k, s = self.kernel_size[0], self.stride[0]
        ih, iw = x.shape[-2:]
        ph = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
        pw = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
        if ph % 2 or pw % 2:
            x = F.pad(x, [0, pw % 2, 0, ph % 2])
        return F.conv2d(x, self.weight, None, self.stride, (ph // 2, pw // 2), 1, self.groups)


def bn(c):
    return nn.BatchNorm2d(c, eps=1e-3)


class MBConv(nn.Module):
    def __init__(self, e, k, s, cin, cout):
        super().__init__()
        mid = cin * e
        self.e, self.res = e, (s == 1 and cin == cout)
        if e != 1:
            self._expand_conv = SameConv(cin, mid, 1, bias=False)
            self._bn0 = bn(mid)
        self._depthwise_conv = SameConv(mid, mid, k, stride=s, groups=mid, bias=False)
        self._bn1 = bn(mid)
        self._project_conv = SameConv(mid, cout, 1, bias=False)
        self._bn2 = bn(cout)

    def forward(self, x):
        y = x
        if self.e != 1:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.res else y


class Backbone(nn.Module):
    def __init__(self, kind):
        super().__init__()
        channels, repeats, stem, expand, frozen_stages = LAYOUTS[kind]
        self._conv_stem = SameConv(3, stem, 3, stride=2, bias=False)
        self._bn0 = bn(stem)
        blocks, cin, self.frozen, self.tap = [], stem, 0, 0
        for i in range(7):
            for r in range(repeats[i]):
                e = 1 if i == 0 else expand
                blocks.append(MBConv(e, KERNELS[i], STRIDES[i] if r == 0 else 1, cin, channels[i]))
                cin = channels[i]
            if i < frozen_stages:
                self.frozen = len(blocks)
            if i == 4:
                self.tap = len(blocks) - 1
        self._blocks = nn.ModuleList(blocks)
        self.pretrained = kind != "small"
        if self.pretrained:
            for p in self._conv_stem.parameters():
                p.requires_grad_(False)
            for b in self._blocks[:self.frozen]:
                for p in b.parameters():
                    p.requires_grad_(False)
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    for p in m.parameters():
                        p.requires_grad_(False)

    def forward(self, x):
        with torch.no_grad():
            y = F.relu6(self._bn0(self._conv_stem(x)))
            for b in self._blocks[:self.frozen]:
                y = b(y)
        c16 = None
        for i in range(self.frozen, len(self._blocks)):
            y = self._blocks[i](y)
            if i == self.tap:
                c16 = y
        return c16, y


def roi_align(feat, rois, stride, out=7, sr=2):
    _, c, h, w = feat.shape
    r = rois.shape[0]
    n = out * sr
    t = (torch.arange(n, dtype=feat.dtype, device=feat.device) + 0.5) / n
    x = rois[:, 0:1] + (rois[:, 2:3] - rois[:, 0:1]) * t[None]
    y = rois[:, 1:2] + (rois[:, 3:4] - rois[:, 1:2]) * t[None]
    gx = x * (2 / (stride * w)) - 1
    gy = y * (2 / (stride * h)) - 1
    grid = torch.stack([gx[:, None, :].expand(r, n, n), gy[:, :, None].expand(r, n, n)], -1)
    s = F.grid_sample(feat, grid.reshape(1, r * n, n, 2), mode="bilinear", padding_mode="zeros",
                      align_corners=False)
    s = F.avg_pool2d(s, sr)  # [1, C, R*out, out]: pooled before the RoIs are laid out
    return s.reshape(c, r, out, out).permute(1, 0, 2, 3)


class Detector(nn.Module):
    def __init__(self, kind, classes):
        super().__init__()
        channels = LAYOUTS[kind][0]
        self.backbone = Backbone(kind)
        self.lat16 = nn.Conv2d(channels[4], 64, 1)
        self.lat32 = nn.Conv2d(channels[6], 64, 1)
        self.smooth = nn.Conv2d(64, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 49, 256)
        self.fc2 = nn.Linear(256, 256)
        self.cls = nn.Linear(256, classes + 1)
        self.bbox = nn.Linear(256, 4)

    def feature_map(self, x):
        c16, c32 = self.backbone(x)
        top = F.interpolate(self.lat32(c32), size=c16.shape[-2:], mode="nearest")
        return F.relu(self.smooth(self.lat16(c16) + top))

    def losses(self, fmap, rois, labels, targets):
        h = roi_align(fmap, rois, 16.0).flatten(1)
        h = F.relu(self.fc2(F.relu(self.fc1(h))))
        logits, deltas = self.cls(h), self.bbox(h)
        ce = F.cross_entropy(logits, labels, reduction="none")
        box = F.smooth_l1_loss(deltas, targets, reduction="none", beta=1.0).sum(1)
        return ce + box * (labels > 0).float()


def box_iou(a, b):
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(2)
    return inter / (area_a[:, None] + area_b[None] - inter + 1e-9)


def select(losses, images, m, iou=0.7):
    """Top M by loss after NMS by loss among the RoIs of each image."""
    keep = []
    order = torch.argsort(losses, descending=True).tolist()
    kept_by_image = {}
    for i in order:
        if len(keep) >= m:
            break
        image, roi = images[i]
        kept = kept_by_image.setdefault(image, [])
        if kept and bool((box_iou(roi[None], torch.stack(kept))[0] > iou).any()):
            continue
        kept.append(roi)
        keep.append(i)
    return keep


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", required=True)
    ap.add_argument("--backbone", default="efficientnet-lite0")
    ap.add_argument("--weights", default="")
    ap.add_argument("--classes", type=int, default=1)
    ap.add_argument("--m", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    tensors = read_safetensors(args.batches)
    count = 1 + max(int(k.split(".")[0]) for k in tensors)
    batches = []
    for b in range(count):
        images = sorted({int(k.split(".")[1]) for k in tensors if k.startswith(f"{b}.")})
        batches.append([{part: tensors[f"{b}.{i}.{part}"].to(device)
                         for part in ("pixels", "rois", "labels", "targets")} for i in images])
    net = Detector(args.backbone, args.classes)
    if args.weights and args.backbone != "small":
        state = {k: v for k, v in read_safetensors(args.weights).items()
                 if not k.startswith(("_conv_head", "_bn1.", "_fc"))}
        net.backbone.load_state_dict(state, strict=True)
    net.to(device).eval()  # BatchNorm on stored statistics
    backbone = [p for n, p in net.named_parameters() if p.requires_grad and n.startswith("backbone")]
    rest = [p for n, p in net.named_parameters() if p.requires_grad and not n.startswith("backbone")]
    opt = torch.optim.AdamW([{"params": backbone, "lr": 3e-4}, {"params": rest, "lr": 1e-3}],
                            weight_decay=1e-4)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def ohem_step(batch):
        maps = [net.feature_map(im["pixels"]) for im in batch]
        with torch.no_grad():
            losses = torch.cat([net.losses(f.detach(), im["rois"], im["labels"], im["targets"])
                                for f, im in zip(maps, batch)])
        places = [(i, roi) for i, im in enumerate(batch) for roi in im["rois"].cpu()]
        picked = select(losses.cpu(), places, args.m)
        offsets = [0]
        for im in batch:
            offsets.append(offsets[-1] + im["rois"].shape[0])
        parts = []
        for i, (f, im) in enumerate(zip(maps, batch)):
            rows = [p - offsets[i] for p in picked if offsets[i] <= p < offsets[i + 1]]
            if rows:
                idx = torch.tensor(rows, device=device)
                parts.append(net.losses(f, im["rois"][idx], im["labels"][idx], im["targets"][idx]))
        loss = torch.cat(parts).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    def full_step(batch):
        parts = [net.losses(net.feature_map(im["pixels"]), im["rois"], im["labels"], im["targets"])
                 for im in batch]
        loss = torch.cat(parts).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    times = {}
    for name, step in (("OHEM", ohem_step), ("full", full_step)):
        step(batches[0])  # warm-up
        sync()
        start = time.perf_counter()
        for batch in batches:
            step(batch)
        sync()
        times[name] = (time.perf_counter() - start) / len(batches) * 1000
    rois = sum(im["rois"].shape[0] for b in batches for im in b) / len(batches)
    print(f"PyTorch {torch.__version__} on {args.device}, {torch.get_num_threads()} threads, "
          f"{args.backbone}, K = {rois:.0f}, M = {args.m}, {len(batches)} batches")
    print(f"PyTorch OHEM step {times['OHEM']:.2f} ms, full step {times['full']:.2f} ms, "
          f"ratio {times['OHEM'] / times['full']:.3f}")


if __name__ == "__main__":
    main()
