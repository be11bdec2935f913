"""Train a score model with denoising score matching on the VP SDE.

    python -m train.train digits --steps 4000 --threads 2
    python -m train.train emoji --device cuda --minutes 7   # on a GPU, the cosine decay aimed at 7 minutes

Checkpoints go to train/runs/<name>/ckpt.pt every --ckpt-every steps; running the same command again
resumes from there (same seed, same data order). An EMA copy is kept with a warm-up
(decay_n = min(ema, (1 + n) / (10 + n))). Sample grids are written to train/runs/<name>/.
"""
import argparse
import copy
import csv
import math
import os
import signal
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from . import data, nets
from .sde import VPSDE, ddim_sample

HERE = os.path.dirname(os.path.abspath(__file__))

# One entry per shipped model: architecture, data and default training settings.
PRESETS = {
    "toy2d": {
        "arch": {"type": "mlp", "dim": 2, "width": 128, "depth": 3, "num_classes": len(data.TOY2D_NAMES),
                 "time_base": 64, "time_scale": 1000.0},
        "batch": 512, "lr": 2e-3, "steps": 6000, "ema": 0.999, "label_dropout": 0.2, "bf16": False,
    },
    "digits": {
        "arch": {"type": "unet", "in_ch": 1, "base": 32, "mults": [1, 2, 2], "num_res": 1, "attn_res": [8],
                 "image_size": 32, "num_classes": 10, "groups": 8, "norm_eps": 1e-5, "time_scale": 1000.0},
        "batch": 64, "lr": 1e-3, "steps": 5000, "ema": 0.999, "label_dropout": 0.1, "bf16": True,
    },
    "emoji": {
        "arch": {"type": "unet", "in_ch": 3, "base": 32, "mults": [1, 2, 2], "num_res": 1, "attn_res": [8],
                 "image_size": 32, "num_classes": len(data.EMOJI_CATEGORIES), "groups": 8, "norm_eps": 1e-5,
                 "time_scale": 1000.0},
        "batch": 64, "lr": 1e-3, "steps": 10000, "ema": 0.999, "label_dropout": 0.1, "bf16": True, "hflip": True,
    },
}
SDE = VPSDE()


class Batches:
    """Draws training batches: images from the data set, or fresh points from the toy distributions."""

    def __init__(self, name, seed):
        self.name = name
        self.rng = np.random.default_rng(seed)
        if name == "toy2d":
            self.num_classes = len(data.TOY2D_NAMES)
        else:
            x, y, _, _ = data.load(name)
            self.x = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
            self.y = torch.from_numpy(y)

    def draw_probabilities(self, power):
        """Per-image draw probabilities proportional to count(class)^-power: 0 draws images uniformly
        (classes in their data proportions), 1 draws classes uniformly."""
        counts = torch.bincount(self.y).double().numpy()
        w = counts[self.y.numpy()] ** -power
        return w / w.sum()

    def __call__(self, batch, hflip=False, weights=None):
        if self.name == "toy2d":
            y = self.rng.integers(0, self.num_classes, batch)
            pts = np.zeros((batch, 2))
            for k in range(self.num_classes):
                sel = y == k
                pts[sel] = data.sample_toy2d(data.TOY2D_NAMES[k], int(sel.sum()), self.rng)
            return torch.from_numpy(pts).float(), torch.from_numpy(y)
        if weights is None:
            idx = torch.from_numpy(self.rng.integers(0, len(self.x), batch))
        else:
            idx = torch.from_numpy(self.rng.choice(len(self.x), batch, p=weights))
        x = self.x[idx]
        if hflip:
            flip = torch.from_numpy(self.rng.random(batch) < 0.5)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x, self.y[idx]


def dsm_loss(net, x0, labels, gen):
    """Denoising score matching with eps-prediction: E ||eps_theta(alpha x0 + sigma eps, t) - eps||^2.
    The random draws come from `gen` on the CPU whatever device x0 is on, so a run draws the same
    t and noise on a GPU as on the CPU and a checkpoint resumes on either."""
    n = x0.shape[0]
    # stratified t: one uniform draw per batch slot, shifted together (lower-variance loss)
    u = (torch.rand(1, generator=gen) + torch.arange(n) / n) % 1.0
    t = (SDE.t_eps + (1.0 - SDE.t_eps) * u).to(x0.device)
    alpha, sigma = SDE.alpha_sigma(t)
    shape = (n,) + (1,) * (x0.dim() - 1)
    eps = torch.randn(x0.shape, generator=gen).to(x0.device)
    xt = alpha.view(shape) * x0 + sigma.view(shape) * eps
    return F.mse_loss(net(xt, t, labels).float(), eps)


def bf16_autocast(preset, device, choice="auto"):
    """Whether to train in bfloat16 autocast. `auto`: where the preset asks for it and the hardware
    computes in bf16 natively (a GPU, or a CPU whose oneDNN has bf16 kernels: AVX-512 or AMX).
    Emulated on an AVX2-only CPU it is 14x slower than f32 (emoji, base 48, two threads: 36 s
    against 2.6 s a step), so there `auto` trains in f32."""
    if choice != "auto":
        return choice == "bf16"
    if not preset["bf16"]:
        return False
    if device.type != "cpu":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def learning_rate(preset, step, first, steps, warmup=200):
    """Linear warm-up over `warmup` steps from `first` (where this optimiser started), then constant
    or a cosine decay from `first` to `steps` down to lr * lr_floor."""
    lr = preset["lr"] * min(1.0, (step - first + 1) / warmup)
    if preset.get("lr_schedule", "constant") == "cosine":
        progress = min(1.0, (step - first) / max(steps - first, 1))
        floor = preset.get("lr_floor", 0.0)
        lr *= floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return lr


def save_grid(path, x, nrow, scale=3):
    """Images in a grid with a 2-pixel white border (the layout the CLI writes and reads), enlarged `scale` times."""
    from PIL import Image
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    n, h, w, c = x.shape
    rows = (n + nrow - 1) // nrow
    grid = np.full((rows * (h + 2) + 2, nrow * (w + 2) + 2, c), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, nrow)
        grid[2 + r * (h + 2):2 + r * (h + 2) + h, 2 + q * (w + 2):2 + q * (w + 2) + w] = x[i]
    Image.fromarray(grid[..., 0] if c == 1 else grid).resize((grid.shape[1] * scale, grid.shape[0] * scale),
                                                             Image.NEAREST).save(path)


def preview(name, ema, arch, path, seed=0):
    g = torch.Generator().manual_seed(seed)
    ncls = arch["num_classes"]
    if arch["type"] == "mlp":
        return
    labels = torch.arange(ncls).repeat_interleave(8)[: 8 * ncls]
    x = ddim_sample(ema, SDE, (len(labels), arch["in_ch"], arch["image_size"], arch["image_size"]), labels,
                    steps=30, guidance=2.0, null_label=ncls, generator=g)
    save_grid(path, x, nrow=8)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=sorted(PRESETS))
    p.add_argument("--steps", type=int, help="total optimiser steps (default: preset)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="where the network trains: cpu, cuda, cuda:1, ... (the data and the random"
                                                   " draws stay on the CPU: a run resumes on either)")
    p.add_argument("--autocast", choices=["auto", "bf16", "off"], default="auto",
                   help="bf16 autocast: auto uses it where the preset asks for it and the hardware has bf16 natively")
    p.add_argument("--minutes", type=float, help="instead of --steps: train this many more minutes; the end step (and"
                                                 " a cosine decay's end) is set from the rate over steps 20-100 of this run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--preview-every", type=int, default=1000)
    p.add_argument("--run-dir", help="default train/runs/<name>")
    p.add_argument("--lr", type=float, help="peak learning rate (default: preset)")
    p.add_argument("--lr-schedule", choices=["constant", "cosine"], help="after the warm-up (default: preset, constant)")
    p.add_argument("--lr-floor", type=float, help="cosine: the last learning rate as a share of the peak (default 0)")
    p.add_argument("--ema", type=float, help="EMA decay (default: preset)")
    p.add_argument("--batch", type=int, help="batch size (default: preset)")
    p.add_argument("--class-balance", type=float, help="draw images with probability count(class)^-p: 0 as in the data "
                                                       "(default), 1 classes uniformly")
    p.add_argument("--base", type=int, help="U-Net: channels at the first level (default: preset)")
    p.add_argument("--attn-res", type=int, nargs="+", help="U-Net: resolutions with attention (default: preset)")
    p.add_argument("--groups", type=int, help="U-Net: group-norm groups (default: preset; 12 for a network widened by"
                                              " train.widen)")
    p.add_argument("--init", help="with no checkpoint: continue from an exported weights file (e.g. models/emoji.safetensors);"
                                  " the step count and minutes continue from its metadata, the optimiser starts fresh")
    args = p.parse_args(argv)

    preset = dict(PRESETS[args.name])
    for key in ("lr", "lr_schedule", "lr_floor", "ema", "batch", "class_balance"):
        if getattr(args, key) is not None:
            preset[key] = getattr(args, key)
    preset["arch"] = dict(preset["arch"])
    for key in ("base", "attn_res", "groups"):
        if getattr(args, key) is not None:
            preset["arch"][key] = getattr(args, key)
    steps = args.steps or preset["steps"]
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest convolutions once
    run_dir = args.run_dir or os.path.join(os.environ.get("SCORELAB_RUNS", os.path.join(HERE, "runs")), args.name)
    os.makedirs(run_dir, exist_ok=True)
    ckpt_path = os.path.join(run_dir, "ckpt.pt")

    torch.manual_seed(args.seed)
    net = nets.build(preset["arch"]).to(device)
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=preset["lr"], weight_decay=0.0)
    gen = torch.Generator().manual_seed(args.seed + 1)
    batches = Batches(args.name, args.seed + 2)
    step, seconds = 0, 0.0
    first = 0  # the step the learning-rate warm-up counts from (a fresh optimiser warms up again)
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        net.load_state_dict(ck["net"]), ema.load_state_dict(ck["ema"]), opt.load_state_dict(ck["opt"])
        gen.set_state(ck["gen"])
        batches.rng.bit_generator.state = ck["rng"]
        step, seconds, first = ck["step"], ck["seconds"], ck.get("first", 0)
        if ck["preset"] != preset:
            sys.exit(f"{ckpt_path} was written with other settings: {ck['preset']}; run with those or another --run-dir")
        print(f"resumed {args.name} at step {step}")
    elif args.init:
        import json
        from safetensors import safe_open
        with safe_open(args.init, "pt") as f:
            meta = json.loads(f.metadata()["scorelab"])
            state = {k: f.get_tensor(k).float() for k in f.keys()}
        if meta["arch"] != preset["arch"]:
            sys.exit(f"{args.init}: its architecture differs from the {args.name} preset")
        net.load_state_dict(state), ema.load_state_dict(state)
        step, seconds = meta["training"]["steps"], meta["training"]["minutes"] * 60
        first = step
        print(f"continuing {args.name} from {args.init} at step {step}")
    nparams = sum(p.numel() for p in net.parameters())
    bf16 = bf16_autocast(preset, device, args.autocast)
    print(f"{args.name}: {nparams / 1e6:.3f}M parameters, batch {preset['batch']}, {device}"
          f"{f', {args.threads} threads' if device.type == 'cpu' else ''}, {'bf16 autocast' if bf16 else 'f32'}")
    # --minutes: the end step is set from the rate over this run's steps 20-100 (the first ones
    # allocate and pick kernels); until then the run is aimed at --steps, or 100 steps on if later.
    start, time_up, seconds_20 = step, None, None
    if args.minutes is not None:
        time_up = seconds + args.minutes * 60  # in training seconds, as `seconds` counts them
        steps = max(steps, step + 100)

    def checkpoint():
        tmp = ckpt_path + ".tmp"
        torch.save({"net": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                    "gen": gen.get_state(), "rng": batches.rng.bit_generator.state, "step": step,
                    "seconds": seconds, "first": first, "preset": preset, "seed": args.seed}, tmp)
        os.replace(tmp, ckpt_path)

    weights = batches.draw_probabilities(preset["class_balance"]) if preset.get("class_balance") else None
    log = open(os.path.join(run_dir, "loss.csv"), "a", newline="")
    writer = csv.writer(log)
    t_last, loss_avg = time.time(), None
    # A run paused with SIGSTOP (to give a benchmark the machine) resumes with SIGCONT: the pause
    # is not training time.
    resumed = []
    signal.signal(signal.SIGCONT, lambda *_: resumed.append(time.time()))
    while step < steps:
        x0, labels = batches(preset["batch"], preset.get("hflip", False), weights)
        drop = torch.rand(labels.shape, generator=gen) < preset["label_dropout"]
        labels = torch.where(drop, torch.full_like(labels, preset["arch"]["num_classes"]), labels)
        x0, labels = x0.to(device), labels.to(device)
        for g in opt.param_groups:
            g["lr"] = learning_rate(preset, step, first, steps)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = dsm_loss(net, x0, labels, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        decay = min(preset["ema"], (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pn in zip(ema.parameters(), net.parameters()):
                pe.lerp_(pn, 1.0 - decay)
        now = time.time()
        if resumed:
            t_last = max(t_last, resumed[-1])
            resumed.clear()
        seconds += now - t_last
        t_last = now
        if time_up is not None and step - start <= 100:
            if seconds >= time_up:
                steps = step  # the time ran out before the rate was measured
            elif step - start == 20:
                seconds_20 = seconds
            elif step - start == 100:
                rate = 80 / (seconds - seconds_20)
                steps = step + max(1, int(rate * (time_up - seconds)))
                print(f"\n{rate:.2f} steps/s: {args.minutes:g} minutes end at step {steps}")
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        writer.writerow([step, f"{loss.item():.5f}", f"{seconds:.1f}"])
        if step % 10 == 0 or step == steps:
            rate = preset["batch"] * step / max(seconds, 1e-9)
            bar = "#" * int(30 * step / steps)
            sys.stdout.write(f"\r[{bar:<30}] {step}/{steps} loss {loss_avg:.4f} {rate:.0f} samples/s "
                             f"{seconds / 60:.1f} min")
            sys.stdout.flush()
        if step % args.ckpt_every == 0 or step == steps:
            log.flush()
            checkpoint()
        if step % args.preview_every == 0 or step == steps:
            preview(args.name, ema, preset["arch"], os.path.join(run_dir, f"preview_{step:06d}.png"))
            t_last = time.time()  # previews do not count as training time
    print(f"\ndone: {step} steps in {seconds / 60:.1f} min")


if __name__ == "__main__":
    main()
