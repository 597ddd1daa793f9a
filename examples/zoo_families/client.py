#!/usr/bin/python3
"""Sends every image of a folder to `coe serve` as a binary FP32 tensor (the Open
Inference Protocol's binary data extension), one request each, the pixels as coe's
image reader makes them (RGB planes, 0-255), and prints id,answer,exit_tier lines.

    client.py PORT MODEL IMAGES_DIR
"""
import json
import os
import sys
import urllib.request

import numpy as np
from PIL import Image


def main():
    port, model, folder = sys.argv[1], sys.argv[2], sys.argv[3]
    print("id,answer,exit_tier")
    for name in sorted(os.listdir(folder)):
        pixels = np.asarray(Image.open(os.path.join(folder, name)).convert("RGB"), dtype=np.float32)
        tensor = np.ascontiguousarray(pixels.transpose(2, 0, 1)[None])  # [1, 3, H, W]
        head = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": list(tensor.shape),
                                       "parameters": {"binary_data_size": tensor.nbytes}}],
                           "outputs": [{"name": "label"}, {"name": "exit_tier"}]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/{model}/infer", data=head + tensor.tobytes(),
                                         headers={"Inference-Header-Content-Length": str(len(head)),
                                                  "Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(request) as reply:
            outputs = {o["name"]: o["data"] for o in json.load(reply)["outputs"]}
        print(f"{name},{outputs['label'][0]},{outputs['exit_tier'][0]}")


if __name__ == "__main__":
    main()
