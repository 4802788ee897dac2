#!/usr/bin/env python3
"""ohem-studio's training step written again in plain PyTorch, to hold `ohem-studio bench` to
what the same libtorch kernels cost from Python.

The network mirrors src/detector/net.rs: four 3x3 conv + ReLU stages (16/32/48/64 channels times
--width, strides 2, 1, 2, 2); a head conv covering the whole window (96 x width channels, ReLU);
a 1x1 output conv with background + classes + 4 box deltas. Loss per example: cross-entropy plus
smooth-L1 (beta 1/9) on the deltas of positives. AdamW with weight decay 0.01. OHEM: read-only
pass under no_grad, top-M by loss, forward/backward of the M. Full batch: forward/backward of all
K. `ohem-studio bench --reference` passes its own K, M, window and width. Keep this file in step
with net.rs when the network changes.

`make bench` runs it with the torch that `make` fetched, when Python can import it.
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self, classes, window_hw, width):
        super().__init__()
        c = [3] + [n * width for n in (16, 32, 48, 64)]
        strides = (2, 1, 2, 2)
        self.convs = nn.ModuleList(nn.Conv2d(c[i], c[i + 1], 3, strides[i], 1) for i in range(4))
        head = 96 * width
        self.head = nn.Conv2d(c[4], head, (window_hw[0] // 8, window_hw[1] // 8))
        self.out = nn.Conv2d(head, classes + 1 + 4, 1)
        self.classes = classes

    def forward(self, x):
        for conv in self.convs:
            x = F.relu(conv(x))
        return self.out(F.relu(self.head(x))).flatten(1)

    def losses(self, x, labels, targets):
        out = self.forward(x)
        c = self.classes + 1
        logits, deltas = out[:, :c], out[:, c:c + 4]
        ce = F.cross_entropy(logits, labels, reduction="none")
        box = F.smooth_l1_loss(deltas, targets, reduction="none", beta=1 / 9).sum(1)
        return ce + box * (labels > 0).float()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=256)
    ap.add_argument("--m", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--window-w", type=int, default=48)
    ap.add_argument("--window-h", type=int, default=24)
    ap.add_argument("--width", type=int, default=1, help="channel multiplier: 1 small, 2 large")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(7)
    k, m, window = a.k, min(a.m, a.k), (a.window_h, a.window_w)
    dev = torch.device(a.device)
    x = (torch.rand(k, 3, *window) - 0.5).to(dev)
    labels = (torch.rand(k) < 0.25).long().to(dev)
    targets = (torch.randn(k, 4) * 0.1).to(dev)
    nets = {s: Net(1, window, a.width).to(dev) for s in ("ohem", "full")}
    nets["full"].load_state_dict(nets["ohem"].state_dict())
    opts = {s: torch.optim.AdamW(n.parameters(), lr=1e-3, weight_decay=0.01) for s, n in nets.items()}
    times = {s: 0.0 for s in nets}
    warmup = 5
    for step in range(warmup + a.steps):
        # Taking turns, as the project's engine does.
        for s in ("ohem", "full") if step % 2 == 0 else ("full", "ohem"):
            net, opt = nets[s], opts[s]
            t = time.perf_counter()
            if s == "full":
                loss = net.losses(x, labels, targets).mean()
            else:
                with torch.no_grad():
                    per_example = net.losses(x, labels, targets)
                idx = torch.topk(per_example, m).indices
                loss = net.losses(x[idx], labels[idx], targets[idx]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            float(loss.detach())  # waits for the device, as the project's step does
            if step >= warmup:
                times[s] += time.perf_counter() - t
    ohem, full = (times[s] * 1000 / a.steps for s in ("ohem", "full"))
    print(f"PyTorch {torch.__version__} on {a.device}, {torch.get_num_threads()} threads, K = {k}, M = {m}")
    print(f"PyTorch OHEM step {ohem:.2f} ms, full step {full:.2f} ms, ratio {ohem / full:.3f}")


if __name__ == "__main__":
    main()
