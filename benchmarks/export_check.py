"""Exported files against the networks they were exported from, on measured accuracy.

Why: `apqopt export` promises that the file holds the network `measure()` measured. Quantizers make
that a statement about decisions, not bits: an activation on a step's edge can round one step apart
under another runtime's float arithmetic. For a few quantized candidates (the shipped fmnist supernet,
the default fine-tune) this measures, on the same val images, PyTorch's accuracy, the `.pt2` program's,
and the ONNX file's in onnxruntime (as written, and with its default optimizations, which run some
convs as integer QLinearConv), with the share of images whose predicted class agrees with PyTorch.

Run: python benchmarks/export_check.py [--n 3] [--images 5000]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from _common import write
from tqdm import tqdm

from apqopt.export import deployable, export, run_exported
from apqopt.shipped import supernet_path
from apqopt.supernet.collect import CollectConfig, measured_network
from apqopt.supernet.data import accuracy_stderr, load_split
from apqopt.supernet.train import load_supernet


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3, help="quantized candidates (seeds 0..n-1 of space.sample)")
    ap.add_argument("--images", type=int, default=5000, help="val images")
    args = ap.parse_args()
    net = load_supernet(supernet_path("fmnist"))
    val = load_split("val", "fmnist", "fmnist").subset(args.images)
    labels = val.labels.numpy()
    plain = ort.SessionOptions()
    plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    rows, table = (
        [],
        [["candidate", "PyTorch", ".pt2", "ONNX as written", "ONNX optimized", "agree (written / optimized)"]],
    )
    with tempfile.TemporaryDirectory() as tmp:
        for seed in tqdm(range(args.n), desc="export"):
            cand = net.space.to_candidates(net.space.sample(1, seed))[0]
            q = measured_network(net, cand, CollectConfig(kind="quant"), seed=0)
            with torch.no_grad():
                ref = np.concatenate(
                    [deployable(q)(val.images[i : i + 500]).numpy() for i in range(0, args.images, 500)]
                )
            onnx_path = export(q, Path(tmp) / f"{seed}.onnx", val.images)
            pt2_path = export(q, Path(tmp) / f"{seed}.pt2", val.images)
            session = ort.InferenceSession(str(onnx_path), plain, providers=["CPUExecutionProvider"])
            written = np.concatenate(
                [session.run(None, {"x": val.images[i : i + 500].numpy()})[0] for i in range(0, args.images, 500)]
            )
            optimized, pt2 = run_exported(onnx_path, val.images), run_exported(pt2_path, val.images)
            acc = {
                k: float((v.argmax(1) == labels).mean())
                for k, v in {"torch": ref, "pt2": pt2, "onnx_written": written, "onnx_optimized": optimized}.items()
            }
            agree = [float((v.argmax(1) == ref.argmax(1)).mean()) for v in (written, optimized)]
            rows.append({"seed": seed, "accuracy": acc, "agree_written": agree[0], "agree_optimized": agree[1]})
            table.append(
                [
                    f"sample seed {seed}",
                    *(f"{100 * a:.2f}" for a in acc.values()),
                    f"{100 * agree[0]:.1f}% / {100 * agree[1]:.1f}%",
                ]
            )
    se = accuracy_stderr(float(np.mean([r["accuracy"]["torch"] for r in rows])), args.images)
    notes = (
        __doc__.split("\n\n")[1].replace("\n", " ")
        + f" Accuracies in %, on {args.images} val images (standard error ≈ {100 * se:.2f} points)."
    )
    write("export_check", {"images": args.images, "rows": rows}, table, notes=notes)


if __name__ == "__main__":
    main()
