"""Widen a trained U-Net by half (base 32 -> 48, group-norm groups 8 -> 12) and add attention at
more resolutions, keeping what it computes, so that a wider network starts from a trained one
instead of from noise.

    python -m train.widen emoji models/emoji.safetensors --attn-res 16 8 --out train/runs/emoji48w/init.safetensors

How the function is kept. Every feature map of C channels becomes 1.5C: the old channels first,
then new ones. With 12 groups for 8, a group still holds C/8 channels, so each old group is a whole
group of the widened map and normalises exactly as before, and the new channels form groups of
their own. Old outputs keep their weights on old inputs and weigh the new inputs 0; new outputs
start from an ordinary random initialisation. New features are thus computed from the start but
read by nothing until training gives them weight. New attention blocks start with a zero output
projection (the identity); in the old ones the new key channels start at 0 and q is scaled by
sqrt(1.5) for the softmax's 1/sqrt(channels).

Two places are close rather than exact: the up-path blocks that normalise the concatenation of a
64- and a 32-channel map, where a group straddles the two maps and cannot be rebuilt, and the
sinusoidal time embedding, which has `base` frequencies (the old network's 32 are fitted by least
squares from the new one's 48). The script prints how far the widened network's output moves.
"""
import argparse
import json
import math
import os

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from . import nets
from .train import SDE


class Layout:
    """Where a map's old channels go in the widened map; the other channels are new."""

    def __init__(self, size, pos):
        self.size = size  # channels of the widened map
        self.pos = pos  # new index of each old channel

    @staticmethod
    def widened(c, size):
        """Old channels first, new ones after: with 12 groups for 8 over 1.5x the channels, each old
        group is a whole group of the widened map."""
        return Layout(size, list(range(c)))

    def __add__(self, other):
        """The layout of torch.cat([a, b], dim=1)."""
        return Layout(self.size + other.size, self.pos + [p + self.size for p in other.pos])


def widen_linear(w, b, fresh_w, fresh_b, out, inp):
    """Old outputs keep their weights on old inputs and read nothing from the new ones; new outputs
    keep their fresh initialisation (new features, which nothing reads at first)."""
    new_w, new_b = fresh_w.clone(), fresh_b.clone()
    rows, cols = torch.tensor(out.pos), torch.tensor(inp.pos)
    new_w[rows] = 0.0
    new_w[rows[:, None], cols[None, :]] = w
    new_b[rows] = b
    return new_w, new_b


def sinusoid_fit(old_dim, new_dim, scale, ridge=1e-4):
    """A [old_dim, new_dim] matrix A with sinusoidal(s, old) ~= A @ sinusoidal(s, new) over t in
    [t_eps, 1]. The new features are nearly collinear at low frequencies: a plain least-squares fit
    has coefficients in the millions (past f16), so the fit is ridge-regularised."""
    t = torch.linspace(SDE.t_eps, 1.0, 20001, dtype=torch.float64)
    s_old = nets.sinusoidal(t * scale, old_dim).double()
    s_new = nets.sinusoidal(t * scale, new_dim).double()
    gram = s_new.T @ s_new / len(t) + ridge * torch.eye(new_dim, dtype=torch.float64)
    a = torch.linalg.solve(gram, s_new.T @ s_old / len(t)).T
    err = (s_new @ a.T - s_old).pow(2).mean().sqrt().item()
    return a.float(), err


def widen(state, arch, new_arch, seed=0):
    """The widened network's weights: `state` placed inside a fresh initialisation of `new_arch`."""
    base, mults = arch["base"], arch["mults"]
    new_base = new_arch["base"]
    if new_base * 2 != base * 3 or new_arch["groups"] * 2 != arch["groups"] * 3:
        raise ValueError("widens by half, channels and groups alike (base 32 -> 48, groups 8 -> 12)")
    torch.manual_seed(seed)
    fresh = nets.build(new_arch).state_dict()
    out = {}

    def lin(key, out_l, in_l, w=None):
        w = state[key + ".weight"] if w is None else w
        out[key + ".weight"], out[key + ".bias"] = widen_linear(
            w, state[key + ".bias"], fresh[key + ".weight"], fresh[key + ".bias"], out_l, in_l)

    def norm(key, layout):
        for k in ("weight", "bias"):
            v = fresh[f"{key}.{k}"].clone()
            v[torch.tensor(layout.pos)] = state[f"{key}.{k}"]
            out[f"{key}.{k}"] = v

    def widened(c):
        return Layout.widened(c, c * new_base // base)

    hidden = Layout.widened(4 * base, 4 * new_base)
    a, fit_err = sinusoid_fit(base, new_base, arch["time_scale"])
    lin("embed.fc1", hidden, Layout.widened(new_base, new_base), state["embed.fc1.weight"] @ a)
    lin("embed.fc2", hidden, hidden)
    if "embed.class_emb.weight" in state:
        e = fresh["embed.class_emb.weight"].clone()
        e[:, : 4 * base] = state["embed.class_emb.weight"]
        out["embed.class_emb.weight"] = e

    def resblock(key, in_l, cout):
        o = widened(cout)
        norm(key + ".norm1", in_l)
        lin(key + ".conv1", o, in_l)
        lin(key + ".temb", o, hidden)
        norm(key + ".norm2", o)
        lin(key + ".conv2", o, o)
        if key + ".skip.weight" in state:
            lin(key + ".skip", o, in_l)
        return o

    def attention(key, layout):
        if key + ".qkv.weight" not in state:  # a new attention block: the identity at first
            for k in ("norm.weight", "norm.bias", "qkv.weight", "qkv.bias"):
                out[f"{key}.{k}"] = fresh[f"{key}.{k}"]
            out[key + ".proj.weight"] = torch.zeros_like(fresh[key + ".proj.weight"])
            out[key + ".proj.bias"] = torch.zeros_like(fresh[key + ".proj.bias"])
            return
        c, size = len(layout.pos), layout.size
        norm(key + ".norm", layout)
        qkv = Layout(3 * size, [p + j * size for j in range(3) for p in layout.pos])
        lin(key + ".qkv", qkv, layout)
        w, b = out[key + ".qkv.weight"], out[key + ".qkv.bias"]
        # new key channels start at 0 so that q.k is as it was, and the softmax's 1/sqrt(channels)
        # is made up for on q
        new_k = torch.ones(size, dtype=torch.bool)
        new_k[torch.tensor(layout.pos)] = False
        w[size:2 * size][new_k], b[size:2 * size][new_k] = 0.0, 0.0
        w[:size] *= math.sqrt(size / c)
        b[:size] *= math.sqrt(size / c)
        lin(key + ".proj", layout, layout)

    h = widened(base)
    lin("conv_in", h, Layout.widened(arch["in_ch"], arch["in_ch"]))
    skips = [h]
    for level, m in enumerate(mults):
        for i in range(arch["num_res"]):
            h = resblock(f"down.{level}.res.{i}", h, base * m)
            if f"down.{level}.attn.{i}.norm.weight" in fresh:
                attention(f"down.{level}.attn.{i}", h)
            skips.append(h)
        if level != len(mults) - 1:
            lin(f"down.{level}.downsample", h, h)
            skips.append(h)
    h = resblock("mid_res1", h, len(h.pos))
    attention("mid_attn", h)
    h = resblock("mid_res2", h, len(h.pos))
    for level in reversed(range(len(mults))):
        for i in range(arch["num_res"] + 1):
            h = resblock(f"up.{level}.res.{i}", h + skips.pop(), base * mults[level])
            if f"up.{level}.attn.{i}.norm.weight" in fresh:
                attention(f"up.{level}.attn.{i}", h)
        if level != 0:
            lin(f"up.{level}.upsample", h, h)
    norm("norm_out", h)
    lin("conv_out", Layout.widened(arch["in_ch"], arch["in_ch"]), h)
    assert set(out) == set(fresh), set(fresh) ^ set(out)
    return out, fit_err


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name")
    p.add_argument("weights", help="an exported weights file")
    p.add_argument("--attn-res", type=int, nargs="+", help="resolutions with attention in the widened network")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    with safe_open(args.weights, "pt") as f:
        meta = json.loads(f.metadata()["scorelab"])
        state = {k: f.get_tensor(k).float() for k in f.keys()}
    arch = meta["arch"]
    new_arch = dict(arch, base=arch["base"] * 3 // 2, groups=arch["groups"] * 3 // 2)
    if args.attn_res:
        new_arch["attn_res"] = args.attn_res
    widened, fit_err = widen(state, arch, new_arch, args.seed)

    old_net, new_net = nets.build(arch).eval(), nets.build(new_arch).eval()
    old_net.load_state_dict(state), new_net.load_state_dict(widened)
    gen = torch.Generator().manual_seed(1)
    n = 32
    t = torch.linspace(SDE.t_eps, 1.0, n)
    x = torch.randn(n, arch["in_ch"], arch["image_size"], arch["image_size"], generator=gen)
    labels = torch.arange(n) % (arch["num_classes"] + 1)
    with torch.no_grad():
        a, b = old_net(x, t, labels), new_net(x, t, labels)
        rel = ((a - b).norm() / a.norm()).item()
        # With the old time embedding put in, everything before the up path must match to rounding:
        # that part of the widening is exact.
        pad = new_net.embed.fc2.out_features - old_net.embed.fc2.out_features
        new_net.embed.forward = lambda tt, ll: F.pad(old_net.embed(tt, ll), (0, pad))
        old_taps, new_taps = {}, {}
        old_net(x, t, labels, old_taps), new_net(x, t, labels, new_taps)
    c = old_taps["mid_out"].shape[1]
    exact = ((old_taps["mid_out"] - new_taps["mid_out"][:, :c]).norm() / old_taps["mid_out"].norm()).item()
    print(f"sinusoid fit: rms error {fit_err:.2e}; output moved by {rel:.2e} (relative, {n} inputs); "
          f"the middle block's output, given the old time embedding, by {exact:.1e}")
    if exact > 1e-5:
        raise SystemExit("the exact part of the widening does not match: a bug in train/widen.py")

    meta["arch"] = new_arch
    meta["training"]["widened_from"] = {"base": arch["base"], "attn_res": arch["attn_res"]}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_file({k: v.contiguous() for k, v in widened.items()}, args.out, metadata={"scorelab": json.dumps(meta)})
    print(f"wrote {args.out}: base {new_arch['base']}, attention at {new_arch['attn_res']}")


if __name__ == "__main__":
    main()
