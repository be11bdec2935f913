"""Inverse problems and SDEdit on the digits model, run by the scorelab CLI, against classical
baselines on the same measurements.

    python -m train.restore_eval [--images 100] [--steps 100]

- Restoration: `--images` digits, every (10000 / images)-th of the data set so all classes are
  there. The package has no digits beyond the 10,000 the model was trained on, so these are
  training images (the numbers are optimistic for the model; the baselines use no training).
  Measurements are made here in float (the same operators as `src/sampler/inverse.rs`), restored
  by `scorelab <task> --measured`, and scored by PSNR against the clean image and by the rms of
  A x - y. Baselines: bicubic upsampling; Wiener filtering with the data set's own power
  spectrum (an oracle the model does not get).
- SDEdit: digits 0-9 drawn as strokes (10 jittered drawings each), turned into samples at three
  strengths, classified by the independent classifier of `train.evaluate`.

Writes docs/restore.json, docs/digits-restore.png and docs/digits-sdedit.png.
"""
import argparse
import json
import os
import subprocess
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

from . import data
from . import evaluate as ev
from .train import save_grid

ROOT = ev.ROOT
# The CLI (`./build.sh build` makes it); SCORELAB_CLI points elsewhere, e.g. at a copy while rebuilding.
CLI = os.environ.get("SCORELAB_CLI", os.path.join(ROOT, "target", "release", "scorelab"))
MODEL = os.path.join(ROOT, "models", "digits.safetensors")


# ---- the operators (mirroring src/sampler/inverse.rs), on [k, h, w, c] float arrays ----

def downsample(x, f):
    k, h, w, c = x.shape
    return x.reshape(k, h // f, f, w // f, f, c).mean((2, 4))


def blur_passes(width):
    return max(1, round(2 * width * width))


def binomial_1d(v, axis, passes):
    for _ in range(passes):
        p = np.pad(v, [(1, 1) if a == axis else (0, 0) for a in range(v.ndim)])
        n = v.shape[axis]
        v = (np.take(p, range(0, n), axis) + 2 * np.take(p, range(1, n + 1), axis) + np.take(p, range(2, n + 2), axis)) / 4
    return v


def blur(x, width):
    p = blur_passes(width)
    b = binomial_1d(binomial_1d(x, 1, p), 2, p)
    ones = binomial_1d(binomial_1d(np.ones_like(x[:1]), 1, p), 2, p)
    return b / ones


def psnr(a, b):
    mse = ((a - b) ** 2).reshape(len(a), -1).mean(1)
    return 10 * np.log10(4 / np.maximum(mse, 1e-12))


def rms(a, b):
    return np.sqrt(((a - b) ** 2).reshape(len(a), -1).mean(1))


# ---- baselines ----

def bicubic(y, f):
    t = torch.from_numpy(y).permute(0, 3, 1, 2)
    return F.interpolate(t, scale_factor=f, mode="bicubic", align_corners=False).clamp(-1, 1).permute(0, 2, 3, 1).numpy()


def spectrum(train):
    """Mean image and power spectrum of the data (per frequency, unnormalised FFT)."""
    mu = train.mean(0, keepdims=True)
    s = (np.abs(np.fft.fft2(train - mu, axes=(1, 2))) ** 2).mean(0, keepdims=True)
    return mu, s


def wiener(y, mu, s, noise, width=None):
    """Wiener deconvolution (or denoising, width None) with a circulant blur's transfer function."""
    k, h, w, c = y.shape
    if width is None:
        hf, ym = np.ones((1, h, w, 1)), y - mu
    else:
        p = blur_passes(width)
        resp = lambda n: np.cos(np.pi * np.fft.fftfreq(n)) ** (2 * p)
        hf = (resp(h)[:, None] * resp(w)[None, :])[None, :, :, None]
        ym = y - blur(mu, width)
    n = noise ** 2 * h * w + 1e-6
    gain = np.conj(hf) * s / (np.abs(hf) ** 2 * s + n)
    return np.clip(mu + np.real(np.fft.ifft2(gain * np.fft.fft2(ym, axes=(1, 2)), axes=(1, 2))), -1, 1)


# ---- the engine ----

def save_npy(path, x):
    np.save(path, np.ascontiguousarray(x, dtype=np.float32))


def run_cli(command, args, tmp, threads):
    out = os.path.join(tmp, "out.npy")
    cmd = [CLI, command, "--model", MODEL, "--backend", "cpu", "--threads", str(threads), "--n", "1", "--seed", "0",
           "--out", out] + [str(a) for a in args]
    t0 = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return np.load(out), time.time() - t0


# ---- sketches ----

def circle(cx, cy, rx, ry, a0=0.0, a1=2 * np.pi, n=20):
    t = np.linspace(a0, a1, n)
    return list(zip(cx + rx * np.cos(t), cy + ry * np.sin(t)))


STROKES = {
    0: [circle(0.5, 0.5, 0.3, 0.45)],
    1: [[(0.55, 0.05), (0.45, 0.95)]],
    2: [[(0.2, 0.25), (0.35, 0.07), (0.65, 0.07), (0.8, 0.28), (0.7, 0.5), (0.2, 0.95), (0.85, 0.95)]],
    3: [[(0.2, 0.1), (0.75, 0.1), (0.45, 0.45), (0.8, 0.65), (0.7, 0.9), (0.2, 0.92)]],
    4: [[(0.65, 0.95), (0.65, 0.05), (0.15, 0.65), (0.85, 0.65)]],
    5: [[(0.8, 0.08), (0.3, 0.08), (0.25, 0.45), (0.7, 0.45), (0.8, 0.7), (0.65, 0.92), (0.2, 0.9)]],
    6: [[(0.7, 0.05), (0.3, 0.5)] + circle(0.5, 0.72, 0.24, 0.23, np.pi, 3 * np.pi)],
    7: [[(0.15, 0.08), (0.85, 0.08), (0.4, 0.95)]],
    8: [circle(0.5, 0.28, 0.2, 0.22), circle(0.5, 0.72, 0.25, 0.23)],
    9: [circle(0.5, 0.3, 0.23, 0.22), [(0.73, 0.3), (0.62, 0.95)]],
}


def draw(digit, rng, size=32, thick=2.4):
    """A digit as anti-aliased strokes in a 20x20 box (MNIST's), jittered in place, scale and angle."""
    scale = 20 * rng.uniform(0.85, 1.1)
    ang = np.deg2rad(rng.uniform(-10, 10))
    off = np.array([size / 2, size / 2]) + rng.uniform(-1.5, 1.5, 2)
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    pix = np.stack([xx, yy], -1).reshape(-1, 2)
    dist = np.full(len(pix), np.inf)
    for stroke in STROKES[digit]:
        pts = (np.array(stroke) - 0.5) * scale @ rot.T + off
        for a, b in zip(pts[:-1], pts[1:]):
            ab = b - a
            t = np.clip(((pix - a) @ ab) / max(ab @ ab, 1e-9), 0, 1)
            dist = np.minimum(dist, np.linalg.norm(pix - (a + t[:, None] * ab), axis=1))
    ink = np.clip(thick / 2 + 0.5 - dist, 0, 1).reshape(size, size, 1)
    return ink * 2 - 1


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    xs, ys, _, _ = data.load("digits")
    allx = xs.astype(np.float32) / 127.5 - 1
    idx = np.arange(0, len(allx), len(allx) // args.images)[:args.images]
    x = allx[idx]
    mu, s = spectrum(allx)
    rng = np.random.default_rng(0)
    sampler = ["--sampler", "ddpm", "--steps", args.steps]
    res = {"images": f"{len(x)} digits, every {len(allx) // args.images}th of the 10,000 (training images: the package has no others)",
           "sampler": f"DDPM {args.steps} steps (over t in [t_eps, 1]; denoising takes the share below its start)",
           "restore": []}
    shown = {}
    with tempfile.TemporaryDirectory() as tmp:
        ypath = os.path.join(tmp, "y.npy")

        def row(task, method, out, y, A, secs=None):
            r = {"task": task, "method": method, "psnr_db": round(float(psnr(out, x).mean()), 2),
                 "rms_Ax_minus_y": float(f"{rms(A(out), y).mean():.2e}")}
            if secs is not None:
                r["seconds"] = round(secs, 1)
            print(r, flush=True)
            res["restore"].append(r)

        for f in (2, 4):
            y = downsample(x, f)
            save_npy(ypath, y)
            A = lambda v, f=f: downsample(v, f)
            row(f"super-resolution x{f}", "bicubic", bicubic(y, f), y, A)
            for method in ("replace", "gradient"):
                out, secs = run_cli("superres", ["--image", ypath, "--measured", "--factor", f, "--method", method] + sampler, tmp, args.threads)
                row(f"super-resolution x{f}", method, out, y, A, secs)
                if f == 4 and method == "replace":
                    shown["superres"] = (y, out)
        for sigma in (0.2, 0.5):
            y = (x + sigma * rng.standard_normal(x.shape)).astype(np.float32)
            save_npy(ypath, y)
            A = lambda v: v
            row(f"denoising sigma {sigma}", "Wiener (oracle spectrum)", wiener(y, mu, s, sigma), y, A)
            out, secs = run_cli("denoise", ["--image", ypath, "--measured", "--noise", sigma] + sampler, tmp, args.threads)
            row(f"denoising sigma {sigma}", "start at the matching t", out, y, A, secs)
            if sigma == 0.5:
                shown["denoise"] = (y, out)
        width, sy = 1.5, 0.02
        y = (blur(x, width) + sy * rng.standard_normal(x.shape)).astype(np.float32)
        save_npy(ypath, y)
        A = lambda v: blur(v, width)
        row(f"deblurring width {width}, noise {sy}", "Wiener (oracle spectrum)", wiener(y, mu, s, sy, width), y, A)
        for scale in (1.0, 1.5):
            out, secs = run_cli("deblur", ["--image", ypath, "--measured", "--width", width, "--noise", sy, "--scale", scale] + sampler, tmp, args.threads)
            row(f"deblurring width {width}, noise {sy}", f"gradient, scale {scale}", out, y, A, secs)
            if scale == 1.5:
                shown["deblur"] = (y, out)

        # SDEdit from sketches, classified by an independent classifier.
        (xtr, ytr), (xte, yte), _ = ev.image_split("digits")
        clf = ev.train_classifier(xtr, ytr, 10, epochs=10)
        acc = (ev.batched(clf, xte).argmax(1) == yte).float().mean().item()
        print(f"classifier: test accuracy {acc:.4f}", flush=True)
        srng = np.random.default_rng(1)
        labels = np.repeat(np.arange(10), 10)
        sketches = np.stack([draw(int(d), srng) for d in labels]).astype(np.float32)
        classify = lambda v: ev.batched(clf, torch.from_numpy(v).permute(0, 3, 1, 2)).argmax(1).numpy()
        sd = {"classifier_test_accuracy": round(acc, 4), "sketches": "10 jittered stroke drawings of each digit",
              "accuracy": {"0 (the sketch itself)": round(float((classify(sketches) == labels).mean()), 3)}}
        save_npy(ypath, sketches)
        rows = [sketches[::10]]
        for strength in (0.2, 0.3, 0.4):
            out, secs = run_cli("sdedit", ["--image", ypath, "--strength", strength] + sampler, tmp, args.threads)
            a = float((classify(out) == labels).mean())
            sd["accuracy"][str(strength)] = round(a, 3)
            print(f"SDEdit strength {strength}: accuracy {a:.3f} ({secs:.0f} s)", flush=True)
            rows.append(out[::10])
        res["sdedit"] = sd
    path = os.path.join(ev.DOCS, "restore.json")
    json.dump(res, open(path, "w"), indent=1)
    print(f"wrote {path}")
    # Pictures: [clean, measurement (at full size), result] for 8 digits per task; sketches and
    # their SDEdit results by strength.
    pick = slice(0, len(x), len(x) // 8)
    tiles = []
    for task, (y, out) in shown.items():
        f = x.shape[1] // y.shape[1]
        up = np.repeat(np.repeat(y, f, 1), f, 2)
        tiles += [x[pick], up[pick], out[pick]]
    t = torch.from_numpy(np.concatenate(tiles)).permute(0, 3, 1, 2)
    save_grid(os.path.join(ev.DOCS, "digits-restore.png"), t, len(x[pick]))
    save_grid(os.path.join(ev.DOCS, "digits-sdedit.png"), torch.from_numpy(np.concatenate(rows)).permute(0, 3, 1, 2), 10)
    print("wrote docs/digits-restore.png, docs/digits-sdedit.png")


if __name__ == "__main__":
    main()
