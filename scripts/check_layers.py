#!/usr/bin/python3
"""Checks every #include of the library against the layers' allowed arrows.

Each folder of src/ is a layer, and so is each public header of include/coe/ (the
table below). A file may include headers of its own layer and of the layers it is
allowed to use; CMakeLists.txt links each layer's target to exactly those. Run by the
build (target check_layers) and by ctest; exits 1 listing every forbidden include.
    scripts/check_layers.py [SOURCE_DIR]
"""
import os
import re
import sys

# Who may use whom (besides itself). The OpenCV module (src/backends/onnx_backend.cc,
# opencv_plugin.cc) is its own layer "opencv": it links only the shared base.
ALLOWED = {
    "base": set(),
    "data": {"base"},
    "protocol": {"base"},
    "cost": {"base", "data"},
    "core": {"base", "data", "cost"},
    "backends": {"base", "data", "protocol"},
    "opencv": {"base", "data", "backends"},
    "engine": {"base", "data", "core", "backends"},
    "planner": {"base", "data", "core", "cost"},
    "workflow": {"base", "data", "core", "cost", "backends", "engine", "planner"},
    "server": {"base", "data", "core", "backends", "engine", "protocol"},
}

PUBLIC = {
    "status.h": "base", "labels.h": "base", "tensor.h": "base", "files.h": "base",
    "paths.h": "base", "member_output.h": "base",
    "recordings.h": "data", "catalogue.h": "data", "dataset.h": "data",
    "protocol.h": "protocol",
    "cost_model.h": "cost",
    "rules.h": "core", "cascade_spec.h": "core", "evaluate.h": "core",
    "backend.h": "backends",
    "cascade.h": "engine", "record.h": "engine",
    "planner.h": "planner", "report.h": "planner",
    "workflow.h": "workflow",
    "server.h": "server",
}

OPENCV_FILES = {"src/backends/onnx_backend.cc", "src/backends/opencv_plugin.cc"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def layer_of(rel):
    if rel.startswith("include/coe/"):
        return PUBLIC.get(rel[len("include/coe/"):])
    if rel in OPENCV_FILES:
        return "opencv"
    parts = rel.split("/")
    if parts[0] == "src" and len(parts) > 2:
        return parts[1]
    return None


def target_layer(inc):
    if inc.startswith("coe/"):
        return PUBLIC.get(inc[4:], "?" + inc)
    head = inc.split("/")[0]
    return head if head in ALLOWED else None


def main(argv):
    root = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    bad, seen = [], 0
    for top in ("include/coe", "src"):
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for name in sorted(files):
                if not name.endswith((".h", ".cc")):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                layer = layer_of(rel)
                if layer is None:
                    bad.append("%s: not in any layer (add it to scripts/check_layers.py)" % rel)
                    continue
                with open(path, errors="replace") as f:
                    for n, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        seen += 1
                        target = target_layer(m.group(1))
                        if target is None:
                            continue  # a header of the same folder, e.g. "select.h"
                        if target.startswith("?"):
                            bad.append("%s:%d: includes %s, a header of no layer" % (rel, n, m.group(1)))
                        elif target != layer and target not in ALLOWED[layer]:
                            bad.append("%s:%d: layer '%s' may not include %s (layer '%s'); it may use: %s" %
                                       (rel, n, layer, m.group(1), target,
                                        ", ".join(sorted(ALLOWED[layer])) or "nothing"))
    for b in bad:
        print(b)
    if bad:
        print("check_layers: %d forbidden include(s) of %d" % (len(bad), seen))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
