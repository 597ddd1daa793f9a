#!/usr/bin/python3
"""PyTorch's images per second on the models of bench/model_zoo_speed.sh: the same
torchvision builders (tests/zoo/make_corpus.py --full), the same images, on the same
machine, in eval mode under torch.inference_mode(), at each batch size and thread count
(torch.set_num_threads: PyTorch's own intra-op threads); one line of JSON per figure,
as model_zoo_speed prints them.

    /usr/bin/python3 bench/torch_speed.py DIR [--families a,b] [--threads 1,2]
                     [--batches 1,16] [--seconds S] [--runs R]
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "zoo"))
import make_corpus  # noqa: E402


def rate(model, x, seconds):
    done, start = 0, time.perf_counter()
    while True:
        model(x)
        done += x.shape[0]
        wall = time.perf_counter() - start
        if wall >= seconds:
            return done / wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--families", default="")
    ap.add_argument("--threads", default=f"1,{os.cpu_count()}")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    families = [f for f in args.families.split(",") if f]
    seen = set()
    with open(os.path.join(args.dir, "manifest.tsv")) as f:
        rows = [line.split("\t") for line in f if line.strip()]
    for row in rows:
        family, size, images = row[0], int(row[5]), int(row[8])
        if family in seen or (families and family not in families):
            continue
        seen.add(family)
        model, _ = make_corpus.full(family)
        model.eval()
        data = torch.from_numpy(
            __import__("numpy").fromfile(os.path.join(args.dir, f"{family}.input.f32"), dtype="<f4")
            .reshape(images, 3, size, size).copy())
        for threads in [int(t) for t in args.threads.split(",")]:
            torch.set_num_threads(threads)
            for batch in [int(b) for b in args.batches.split(",")]:
                x = data[:batch] if batch <= images else data.repeat((batch + images - 1) // images, 1, 1, 1)[:batch]
                with torch.inference_mode():
                    rate(model, x, 0.1)
                    rates = [rate(model, x, args.seconds) for _ in range(args.runs)]
                print(json.dumps({"family": family, "backend": "pytorch", "threads": threads, "batch": batch,
                                  "images_per_s": round(statistics.median(rates), 3)}), flush=True)


if __name__ == "__main__":
    main()
