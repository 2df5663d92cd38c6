"""Use MANGO in your own model: two encoders, a MANGO flow that fuses their feature maps, a head.

The fusion is a normalizing flow over the tokens of both modalities (``MultiscaleMango``). The head reads
the flow's transformed features of both modalities. The flow is also a density model of the fused
features: its bits/dim (the NLL) is added to the task loss through ``FlowOnlyLikelihood``, so the NLL
trains the flow and never the encoders (which could otherwise lower it by collapsing their features; the
task loss still trains them).

    python examples/mango_in_your_model.py      # a few hundred steps on a generated two-modality task
"""

from __future__ import annotations

import torch
from torch import nn

from mango_lite import FlowConfig, FlowOnlyLikelihood, MultiscaleMango


class TwoModalityClassifier(nn.Module):
    """Modality A (3 channels) and B (1 channel), ``size`` x ``size`` images -> ``classes`` logits."""

    def __init__(self, classes: int = 4, width: int = 8, size: int = 16, nll_weight: float = 0.1) -> None:
        super().__init__()

        def encoder(c_in: int) -> nn.Module:  # stride 2: tokens on a (size/2)^2 grid, width channels each
            return nn.Sequential(nn.Conv2d(c_in, width, 3, padding=1), nn.GELU(),
                                 nn.Conv2d(width, width, 3, stride=2, padding=1))

        self.encode_a, self.encode_b = encoder(3), encoder(1)
        # the layout the library recommends for feature grids; FlowConfig.paper() is the paper's
        self.flow = MultiscaleMango(channels=width, size=size // 2, scales=2, blocks=1, config=FlowConfig.recommended())
        self.head = nn.Linear(sum(2 * d for d in self.flow.feature_channels), classes)
        self.nll_weight = nll_weight

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, classes) and the flow's NLL (bits/dim, a scalar whose gradient reaches the flow only)."""
        flow_only = FlowOnlyLikelihood()  # the NLL trains the flow; the encoders get the task's gradient only
        enc = self.flow.encode(flow_only.inputs(self.encode_a(a), self.encode_b(b)))
        # features[s]: (B, 2, D_s, h_s, w_s), both modalities after the flow at scale s; pooled for the head
        pooled = torch.cat([f.flatten(1, 2).mean((2, 3)) for f in enc.features], dim=1)
        nll = flow_only.likelihood(enc.bits_per_dim.mean())
        return self.head(pooled), nll

    def loss(self, a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        logits, nll = self(a, b)
        task = nn.functional.cross_entropy(logits, labels)
        return task + self.nll_weight * nll, {"task": task.item(), "nll_bpd": nll.item()}


def two_modality_task(n: int, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A task that needs both inputs: the label is which quadrant holds the brightest spot of A, in two
    classes, plus whether B's spot lies in the same half of the image (2 x 2 = 4 classes)."""
    g = torch.Generator().manual_seed(seed)
    a, b = 0.1 * torch.randn(n, 3, size, size, generator=g), 0.1 * torch.randn(n, 1, size, size, generator=g)
    ya, yb = torch.randint(0, 2, (n,), generator=g), torch.randint(0, 2, (n,), generator=g)
    half = size // 2
    for i in range(n):
        r = int(torch.randint(0, half, (1,), generator=g))
        ca = int(torch.randint(0, half, (1,), generator=g)) + half * int(ya[i])
        cb = int(torch.randint(0, half, (1,), generator=g)) + half * int(ya[i] == yb[i])
        a[i, :, r, ca] += 2.0
        b[i, :, r, cb] += 2.0
    return a, b, 2 * ya + yb


def main(steps: int = 300, batch: int = 32, seed: int = 0) -> dict[str, float]:
    torch.manual_seed(seed)
    model = TwoModalityClassifier()
    a, b, y = two_modality_task(1024, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    first = None
    for step in range(steps):
        idx = torch.randint(0, len(y), (batch,))
        loss, parts = model.loss(a[idx], b[idx], y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first or parts
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step:4d}  task {parts['task']:.3f}  flow NLL {parts['nll_bpd']:.3f} bits/dim")
    return {"first_task": first["task"], "last_task": parts["task"], "last_nll_bpd": parts["nll_bpd"]}


if __name__ == "__main__":
    main()
