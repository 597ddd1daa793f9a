#!/usr/bin/python3
"""Sends every image of a folder to `coe serve` as a binary FP32 tensor (the Open
Inference Protocol's binary data extension), one request each, made by torchvision's
Resize(256) and CenterCrop(224) (the pixels coe's `resize = 256` makes of the file, to
the bit: tests/zoo_test.cc), RGB planes of 0-255 values, and prints id,answer,exit_tier
lines.

    client.py PORT MODEL IMAGES_DIR
"""
import json
import os
import sys
import urllib.request

import numpy as np
from PIL import Image
from torchvision import transforms

prep = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.PILToTensor()])


def main():
    port, model, folder = sys.argv[1], sys.argv[2], sys.argv[3]
    print("id,answer,exit_tier")
    for name in sorted(os.listdir(folder)):
        image = Image.open(os.path.join(folder, name)).convert("RGB")
        tensor = prep(image).numpy().astype(np.float32)[None]  # [1, 3, 224, 224]
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
