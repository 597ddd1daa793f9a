#!/usr/bin/python3
"""Checks every #include against the layers' allowed arrows, and that the three
statements of those arrows agree.

Each folder of src/ is a layer, and so is each public header of include/coe/ (the
table below). A file may include headers of its own layer and of the layers it is
allowed to use. Outside the library (OUTSIDE below): apps/, python/, bench/, tests/,
fuzz/ and testing/ may include the public headers (coe/...), the internals of the
layers listed for them, headers of their own folder, and testing/ (fixtures) where
listed; nothing in src/ or include/ includes them.

The arrows are stated three times, and must agree:
  ALLOWED here; CMakeLists.txt's coe_layer(NAME ... LINKS coe_x ...) link lines (every
  arrow must be linked, directly or through another layer, and every layer linked
  directly must be an arrow); the README's Layout table ("may use" column).
Run by the build (target check_layers) and by ctest; exits 1 listing every problem.
    scripts/check_layers.py [SOURCE_DIR]
"""
import os
import re
import sys

# Who may use whom (besides itself). The OpenCV module (src/backends/opencv_backend.cc,
# opencv_module.cc) is its own layer "opencv": it links only the shared base.
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
    "recordings.h": "data", "catalogue.h": "data", "dataset.h": "data", "request_log.h": "data",
    "protocol.h": "protocol",
    "cost_model.h": "cost",
    "rules.h": "core", "cascade_spec.h": "core", "evaluate.h": "core",
    "backend.h": "backends",
    "cascade.h": "engine", "record.h": "engine",
    "planner.h": "planner", "report.h": "planner",
    "workflow.h": "workflow",
    "server.h": "server", "grpc.h": "server",
}

LAYERS = {name for name in ALLOWED if name != "opencv"}

# Folders outside the library: which layers' internals (src/<layer>/...) each may
# include, besides the public headers and its own folder; and whether it may use the
# shared fixtures of testing/.
OUTSIDE = {
    "apps": ({"base"}, False),      # the command: public headers, base's small utilities
    "python": (set(), False),       # the Python package: public headers only
    "bench": (LAYERS, True),        # benchmarks of internals; never a test's header
    "tests": (LAYERS, True),        # white-box tests
    "fuzz": (LAYERS, False),
    "testing": (LAYERS, False),     # fixtures shared by tests/ and bench/
}

OPENCV_FILES = {"src/backends/opencv_backend.cc", "src/backends/opencv_module.cc"}
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


def includes(path):
    with open(path, errors="replace") as f:
        for n, line in enumerate(f, 1):
            m = INCLUDE.match(line)
            if m:
                yield n, m.group(1)


def check_library_file(rel, path, bad):
    layer = layer_of(rel)
    if layer is None:
        bad.append("%s: not in any layer (add it to scripts/check_layers.py)" % rel)
        return
    for n, inc in includes(path):
        head = inc.split("/")[0]
        if "/" in inc and head in OUTSIDE:
            bad.append("%s:%d: the library may not include %s (of %s/)" % (rel, n, inc, head))
            continue
        target = target_layer(inc)
        if target is None:
            continue  # a header of the same folder, e.g. "guards.h"
        if target.startswith("?"):
            bad.append("%s:%d: includes %s, a header of no layer" % (rel, n, inc))
        elif target != layer and target not in ALLOWED[layer]:
            bad.append("%s:%d: layer '%s' may not include %s (layer '%s'); it may use: %s" %
                       (rel, n, layer, inc, target, ", ".join(sorted(ALLOWED[layer])) or "nothing"))


def check_outside_file(folder, rel, path, bad):
    layers, fixtures = OUTSIDE[folder]
    for n, inc in includes(path):
        if "/" not in inc:
            continue  # a header of the same folder, or generated (open_inference.pb.h)
        head = inc.split("/")[0]
        if head == "coe":
            if inc[4:] not in PUBLIC:
                bad.append("%s:%d: includes %s, a header of no layer" % (rel, n, inc))
        elif head in ALLOWED:
            if head not in layers:
                bad.append("%s:%d: %s/ may include the public headers (coe/...)%s, not %s" %
                           (rel, n, folder, "".join(" and src/%s/" % l for l in sorted(layers)), inc))
        elif head == "testing":
            if not fixtures and folder != "testing":
                bad.append("%s:%d: %s/ may not include the test fixtures (%s)" % (rel, n, folder, inc))
        elif head in OUTSIDE and head != folder:
            bad.append("%s:%d: %s/ may not include %s (of %s/)%s" %
                       (rel, n, folder, inc, head,
                        "; a fixture both use belongs in testing/" if fixtures else ""))


def closure(links, layer):
    seen, todo = set(), list(links.get(layer, ()))
    while todo:
        l = todo.pop()
        if l not in seen:
            seen.add(l)
            todo.extend(links.get(l, ()))
    return seen


def check_statements(root, bad):
    """ALLOWED against CMakeLists.txt's link lines and the README's Layout table."""
    cmake = open(os.path.join(root, "CMakeLists.txt")).read()
    links = {"base": set()}
    for m in re.finditer(r"coe_layer\((\w+)\s.*?LINKS([^)]*)\)", cmake, re.S):
        links[m.group(1)] = {w[4:] for w in m.group(2).split() if w.startswith("coe_") and w[4:] in ALLOWED}
    for layer in sorted(LAYERS):
        if layer not in links:
            bad.append("CMakeLists.txt: no coe_layer(%s ...) (or coe_%s) for layer '%s'" % (layer, layer, layer))
            continue
        reach = closure(links, layer) | {"base"}
        for l in sorted(ALLOWED[layer] - reach):
            bad.append("CMakeLists.txt: layer '%s' may use '%s' (scripts/check_layers.py) but coe_%s does not link "
                       "coe_%s" % (layer, l, layer, l))
        for l in sorted(links[layer] - ALLOWED[layer]):
            bad.append("CMakeLists.txt: coe_%s links coe_%s, an arrow scripts/check_layers.py does not allow" %
                       (layer, l))
    readme = open(os.path.join(root, "README.md")).read()
    rows = {}
    for m in re.finditer(r"^\| `(\w+)` \(`coe_\w+`[^|]*\|[^|]*\|([^|]*)\|\s*$", readme, re.M):
        rows[m.group(1)] = {w.strip() for w in m.group(2).split(",") if w.strip() not in ("", "—")}
    for layer in sorted(LAYERS):
        if layer not in rows:
            bad.append("README.md: the Layout table has no row for layer '%s'" % layer)
        elif rows[layer] != ALLOWED[layer]:
            bad.append("README.md: the Layout table says '%s' may use %s; scripts/check_layers.py says %s" %
                       (layer, ", ".join(sorted(rows[layer])) or "nothing",
                        ", ".join(sorted(ALLOWED[layer])) or "nothing"))
    for layer in sorted(set(rows) - LAYERS):
        bad.append("README.md: the Layout table has a row for '%s', which is no layer" % layer)


def main(argv):
    root = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    bad = []
    for top in ["include/coe", "src"] + sorted(OUTSIDE):
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            if "node_modules" in dirpath:
                continue
            for name in sorted(files):
                if not name.endswith((".h", ".cc")):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                if top in OUTSIDE:
                    check_outside_file(top, rel, path, bad)
                else:
                    check_library_file(rel, path, bad)
    check_statements(root, bad)
    for b in bad:
        print(b)
    if bad:
        print("check_layers: %d problem(s)" % len(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
