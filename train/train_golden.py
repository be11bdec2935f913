"""Golden gradients for the engine's training (src/train/): PyTorch autograd on a small ScoreMLP.

    python -m train.train_golden      # -> tests/golden/train_grads.safetensors

Both losses as src/train/mod.rs defines them, on one fixed batch:
  DSM: mean over the batch of 1/2 |eps_theta(x, t) - target|^2
  SSM: mean over the batch of 1/2 |eps_theta(x, t)|^2 - sigma v^T (d eps_theta / dx) v, v = target
(v^T J v is the vector-Jacobian product J^T v dotted with v, differentiated again by autograd.)
The file holds the parameters (PyTorch names and layout), the batch, each loss and the gradient
of every parameter under each loss ("grad.dsm.<name>", "grad.ssm.<name>").
"""
import os

import torch
from safetensors.torch import save_file

from train.nets import ScoreMLP

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def losses(net, x, t, target, sigma):
    labels = torch.zeros(x.shape[0], dtype=torch.long)
    dsm = 0.5 * ((net(x, t, labels) - target) ** 2).sum(1).mean()
    xg = x.clone().requires_grad_(True)
    eps = net(xg, t, labels)
    (jtv,) = torch.autograd.grad(eps, xg, grad_outputs=target, create_graph=True)
    ssm = (0.5 * (eps ** 2).sum(1) - sigma * (jtv * target).sum(1)).mean()
    return {"dsm": dsm, "ssm": ssm}


def main():
    torch.manual_seed(0)
    net = ScoreMLP(dim=2, width=8, depth=2, num_classes=0, time_base=32, time_scale=1000.0)
    n = 6
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 2, generator=gen)
    t = 1e-3 + (1 - 1e-3) * torch.rand(n, generator=gen)
    target = torch.randn(n, 2, generator=gen)
    sigma = 0.05 + torch.rand(n, generator=gen)
    out = {name: p.detach().float().contiguous() for name, p in net.named_parameters()}
    out.update({"batch.x": x.float(), "batch.t": t.float(), "batch.target": target.float(), "batch.sigma": sigma.float()})
    for kind, loss in losses(net, x, t, target, sigma).items():
        net.zero_grad()
        loss.backward()
        out[f"loss.{kind}"] = loss.detach().float().reshape(1)
        for name, p in net.named_parameters():
            out[f"grad.{kind}.{name}"] = p.grad.detach().float().contiguous()
    path = os.path.join(ROOT, "tests", "golden", "train_grads.safetensors")
    save_file(out, path, metadata={"about": "train/train_golden.py"})
    print(f"wrote {path}: " + ", ".join(f"{k} {out[k].item():.6f}" for k in ("loss.dsm", "loss.ssm")))


if __name__ == "__main__":
    main()
