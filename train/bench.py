"""The runtimes a user would otherwise pick, on the shipped networks: PyTorch on the CPU and
onnxruntime (native), timed the way `cargo bench --bench ops` times scorelab (median of 7 after a
warm-up, one network evaluation at t = 0.5). `./build.sh bench` runs it beside the Rust benchmark.

    python -m train.bench                # prints a markdown table
    python -m train.bench --onnx DIR     # also writes DIR/<model>.onnx (for onnxruntime-web)

The ONNX export is checked against PyTorch (max |diff| printed) before it is timed; PyTorch itself
matches scorelab through the golden tensors (`tests/golden.rs`).
"""
import argparse
import os
import statistics
import time

import numpy as np
import torch

from .evaluate import load_shipped

REPS = 7


def median_ms(f):
    f()
    times = []
    for _ in range(REPS):
        start = time.perf_counter()
        f()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def inputs(cfg, n):
    arch = cfg["arch"]
    g = torch.Generator().manual_seed(9)
    if arch["type"] == "mlp":
        x = torch.randn(n, arch["dim"], generator=g)
    else:
        x = torch.randn(n, arch["in_ch"], arch["image_size"], arch["image_size"], generator=g)
    t = torch.full((n,), 0.5)
    labels = torch.full((n,), arch["num_classes"], dtype=torch.long)
    return x, t, labels


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--onnx", help="directory for the exported ONNX files")
    p.add_argument("--models", default="digits,emoji")
    args = p.parse_args()
    import onnxruntime as ort

    print(f"PyTorch {torch.__version__}, onnxruntime {ort.__version__}; median ms of {REPS} evaluations\n")
    print("| model | batch | PyTorch 1 thread | PyTorch 2 threads | onnxruntime 1 thread | onnxruntime 2 threads |")
    print("|---|---|---|---|---|---|")
    for name in args.models.split(","):
        net, cfg = load_shipped(name)
        path = os.path.join(args.onnx or "/tmp", f"{name}.onnx")
        x, t, labels = inputs(cfg, 1)
        torch.onnx.export(net, (x, t, labels), path, input_names=["x", "t", "labels"], output_names=["eps"],
                          dynamic_axes={"x": {0: "n"}, "t": {0: "n"}, "labels": {0: "n"}, "eps": {0: "n"}},
                          dynamo=False)
        for n in (1, 8):
            x, t, labels = inputs(cfg, n)
            row = []
            with torch.no_grad():
                want = net(x, t, labels).numpy()
                for threads in (1, 2):
                    torch.set_num_threads(threads)
                    row.append(median_ms(lambda: net(x, t, labels)))
            feed = {"x": x.numpy(), "t": t.numpy(), "labels": labels.numpy()}
            for threads in (1, 2):
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = threads
                sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
                got = sess.run(None, feed)[0]
                diff = float(np.abs(got - want).max())
                assert diff < 1e-3, f"{name}: onnxruntime differs from PyTorch by {diff}"
                row.append(median_ms(lambda: sess.run(None, feed)))
            print(f"| {name} | {n} | " + " | ".join(f"{v:.1f}" for v in row) + f" |  <!-- onnx max |diff| {diff:.1e} -->")


if __name__ == "__main__":
    main()
