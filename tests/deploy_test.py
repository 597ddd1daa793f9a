#!/usr/bin/python3
"""deploy/kserve/ checked without a cluster (ctest: Deploy.KServe).

1. servingruntime.yaml and inferenceservice.yaml parse and follow KServe's conventions:
   a v2 runtime for model format "coe" on port 8080, health probes, Prometheus
   annotations, the models from /mnt/models, --http_port/--model_name.
2. The Containerfile builds FROM debian:12 with Debian packages only, and its runtime
   stage installs the package of every shared library that coe and its OpenCV module
   load (readelf + dpkg on this Debian host).
3. The container's command line, taken from the YAML, runs on the host against a folder
   laid out like /mnt/models (the zoo and its planned cascade): ready on
   /v2/health/ready, one real infer request answered, coe_ metrics, SIGTERM exits 0.

    deploy_test.py --coe build/coe [--source .]
"""
import argparse
import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

FASHION = "/usr/share/datasets/fashion-mnist"
# Debian 12's own image already has these (Priority: required), the runtime stage
# need not name them.
BASE_IMAGE_PACKAGES = {"libc6", "libstdc++6", "libgcc-s1", "zlib1g"}
SANITIZER_RUNTIMES = re.compile(r"^lib(asan|ubsan|tsan|lsan)\.so")

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, timeout=10):
    req = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def check_yaml(deploy):
    with open(os.path.join(deploy, "servingruntime.yaml")) as f:
        rt = yaml.safe_load(f)
    with open(os.path.join(deploy, "inferenceservice.yaml")) as f:
        isvc = yaml.safe_load(f)

    check(rt.get("apiVersion") == "serving.kserve.io/v1alpha1" and rt.get("kind") == "ServingRuntime",
          "servingruntime.yaml: a serving.kserve.io/v1alpha1 ServingRuntime")
    spec = rt["spec"]
    formats = [m["name"] for m in spec.get("supportedModelFormats", [])]
    check("coe" in formats, "runtime supports model format 'coe'")
    check(spec.get("protocolVersions") == ["v2"], "runtime speaks protocol v2")
    ann = spec.get("annotations", {})
    check(ann.get("prometheus.kserve.io/port") == "8080" and ann.get("prometheus.kserve.io/path") == "/metrics",
          "Prometheus annotations: port \"8080\", path /metrics")
    containers = spec.get("containers", [])
    check(len(containers) == 1 and containers[0].get("name") == "kserve-container",
          "one container named kserve-container")
    c = containers[0]
    args = [str(a) for a in c.get("args", [])]
    check(all(isinstance(a, str) for a in c.get("args", [])), "container args are all strings (YAML-quoted)")
    check(args[:1] == ["serve"], "container runs `coe serve`")

    def flag(name):
        return args[args.index(name) + 1] if name in args and args.index(name) + 1 < len(args) else None

    check(flag("--http_port") == "8080", "args: --http_port 8080")
    check(flag("--model_name") == "{{.Name}}", "args: --model_name {{.Name}}")
    check(flag("--host") == "0.0.0.0", "args: --host 0.0.0.0")
    check(flag("--max-io-wait-ms") == "20", "args: --max-io-wait-ms 20 (open traffic is shed past saturation)")
    check((flag("--cascade") or "").startswith("/mnt/models/") and (flag("--models") or "").startswith("/mnt/models/"),
          "args: cascade and catalogue from /mnt/models")
    check(not any("grpc" in a for a in args), "args: no gRPC flag (coe has no gRPC endpoint yet)")
    ports = c.get("ports", [])
    check([p.get("containerPort") for p in ports] == [8080] and ports[0].get("name") in ("http1", "h2c"),
          "container port 8080, named for Knative (http1)")
    rp = c.get("readinessProbe", {}).get("httpGet", {})
    lp = c.get("livenessProbe", {}).get("httpGet", {})
    check(rp.get("path") == "/v2/health/ready" and rp.get("port") in (None, 8080), "readiness probe: /v2/health/ready")
    check(lp.get("path") == "/v2/health/live" and lp.get("port") in (None, 8080), "liveness probe: /v2/health/live")
    req = c.get("resources", {}).get("requests", {})
    check("cpu" in req and "memory" in req, "resource requests: cpu and memory")

    check(isvc.get("apiVersion") == "serving.kserve.io/v1beta1" and isvc.get("kind") == "InferenceService",
          "inferenceservice.yaml: a serving.kserve.io/v1beta1 InferenceService")
    model = isvc["spec"]["predictor"]["model"]
    check(model["modelFormat"]["name"] in formats, "InferenceService's model format is one the runtime supports")
    check(model.get("runtime") == rt["metadata"]["name"], "InferenceService names the runtime")
    check(model.get("protocolVersion", "v2") == "v2", "InferenceService asks for protocol v2")
    check(bool(re.match(r"^(pvc|gs|s3|https?|hdfs|webhdfs|oci)://", model.get("storageUri", ""))),
          "storageUri is a KServe storage URI")
    return rt, isvc, args


def containerfile_stages(path):
    """[(base, [instructions])] of a Dockerfile-syntax file (continuations joined)."""
    text = re.sub(r"\\\n", " ", open(path).read())
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            stages.append((rest.split()[0], []))
        elif stages:
            stages[-1][1].append((word, rest.strip()))
        else:
            check(word == "ARG", "Containerfile: only ARG before the first FROM")
    return stages


def installed_packages(instructions):
    pkgs = []
    for word, rest in instructions:
        if word != "RUN":
            continue
        for m in re.finditer(r"apt-get install((?:\s+[^&;|]+))", rest):
            pkgs += [t for t in m.group(1).split() if not t.startswith("-")]
    return pkgs


def needed_packages(binaries):
    """Debian packages providing the shared libraries `binaries` name directly."""
    if not shutil.which("readelf") or not shutil.which("dpkg"):
        print("skip runtime-package check: readelf or dpkg missing")
        return None
    pkgs = {}
    for b in binaries:
        dyn = subprocess.run(["readelf", "-d", b], capture_output=True, text=True, check=True).stdout
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn)
        ldd = subprocess.run(["ldd", b], capture_output=True, text=True).stdout
        where = dict(re.findall(r"^\s*(\S+) => (/\S+)", ldd, re.M))
        for soname in needed:
            if soname.startswith("libcoe_") or SANITIZER_RUNTIMES.match(soname) or soname.startswith("ld-linux"):
                continue
            path = where.get(soname)
            if not path:
                check(False, f"{os.path.basename(b)}: {soname} resolves")
                continue
            candidates = [path, os.path.realpath(path)]
            candidates += [p.replace("/usr/lib/", "/lib/", 1) for p in list(candidates) if p.startswith("/usr/lib/")]
            owner = None
            for p in candidates:
                r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
                if r.returncode == 0:
                    owner = r.stdout.split(":")[0].strip()
                    break
            if owner is None:
                check(False, f"{soname} comes from a Debian package")
            else:
                pkgs[owner] = soname
    return pkgs


def check_containerfile(deploy, coe, args):
    path = os.path.join(deploy, "Containerfile")
    stages = containerfile_stages(path)
    check(len(stages) >= 2 and stages[0][0] == "debian:12", "Containerfile: multi-stage, starts FROM debian:12")
    check(all(b == "debian:12" for b, _ in stages), "Containerfile: every stage is FROM debian:12")
    everything = [i for _, ins in stages for i in ins]
    check(not any(w == "ADD" for w, _ in everything), "Containerfile: no ADD (nothing fetched)")
    bad = [r for w, r in everything if w == "RUN" and re.search(r"\b(curl|wget|pip3?|npm|git\s+clone|go\s+get)\b", r)]
    check(not bad, "Containerfile: software only from apt-get (no curl, wget, pip, npm, git clone)")
    installs = [r for w, r in everything if w == "RUN" and re.search(r"\b(apt|dpkg)\b.*\binstall\b", r)]
    check(all("apt-get install" in r and "apt-get update" in r for r in installs),
          "Containerfile: packages installed with apt-get update && apt-get install")
    final = stages[-1][1]
    check(("ENTRYPOINT", '["coe"]') in final, "Containerfile: ENTRYPOINT [\"coe\"]")
    check(any(w == "EXPOSE" and "8080" in r.split() for w, r in final), "Containerfile: EXPOSE 8080")
    cmd = [json.loads(r) for w, r in final if w == "CMD"]
    if cmd:
        check(cmd[0] == [a for a in args if a not in ("--model_name", "{{.Name}}")],
              "Containerfile: CMD is the runtime's args without the model name")
    runtime_pkgs = set(installed_packages(final))
    build_pkgs = set(installed_packages(stages[0][1]))
    check(not any(p.endswith("-dev") or p in ("build-essential", "cmake", "g++") for p in runtime_pkgs),
          "Containerfile: no build tools or -dev packages in the runtime stage")
    check({"cmake", "build-essential"} <= build_pkgs, "Containerfile: the build stage installs cmake and build-essential")
    plugins = [os.path.join(os.path.dirname(coe), m) for m in ("libcoe_opencv.so", "libcoe_images.so", "libcoe_onednn.so", "libcoe_grpc.so")]
    needed = needed_packages([coe] + [p for p in plugins if os.path.exists(p)])
    if needed is not None:
        missing = sorted(set(needed) - runtime_pkgs - BASE_IMAGE_PACKAGES)
        check(not missing, "Containerfile: the runtime stage installs every library package coe loads"
              + (f" (missing: {', '.join(missing)})" if missing else f" ({', '.join(sorted(needed))})"))


def lay_out_models(source, dest):
    """A folder like KServe's /mnt/models: cascade.toml, catalogue.toml, the .onnx files."""
    zoo = os.path.join(source, "models", "zoo")
    shutil.copy(os.path.join(source, "deploy", "kserve", "zoo", "cascade.toml"), os.path.join(dest, "cascade.toml"))
    shutil.copy(os.path.join(zoo, "catalogue.toml"), os.path.join(dest, "catalogue.toml"))
    for name in os.listdir(zoo):
        if name.endswith(".onnx"):
            os.symlink(os.path.join(zoo, name), os.path.join(dest, name))


def test_image():
    """The first Fashion-MNIST test image (an ankle boot) as 784 floats, or zeros."""
    path = os.path.join(FASHION, "t10k-images-idx3-ubyte.gz")
    if os.path.exists(path):
        with gzip.open(path) as f:
            return [float(b) for b in f.read(16 + 784)[16:]], "boot"
    print(f"note: {path} missing (Debian's dataset-fashion-mnist); sending zeros")
    return [0.0] * 784, None


def run_container_command(coe, args, isvc, models_dir):
    name = isvc["metadata"]["name"]
    port = free_port()
    cmd = [coe]
    for i, a in enumerate(args):
        a = a.replace("{{.Name}}", name).replace("/mnt/models", models_dir)
        if i > 0 and args[i - 1] == "--http_port":
            a = str(port)
        if i > 0 and args[i - 1] == "--host":
            a = "127.0.0.1"  # the test listens on loopback only
        cmd.append(a)
    print("running:", " ".join(cmd), flush=True)
    log = open(os.path.join(models_dir, "..", "serve.log"), "w+")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        ready = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if http("GET", base + "/v2/health/ready", timeout=2)[0] == 200:
                    ready = True
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.1)
        if not check(ready, "server ready on /v2/health/ready"):
            return
        status, _ = http("GET", base + "/v2/health/live")
        check(status == 200, "/v2/health/live: 200")
        status, body = http("GET", f"{base}/v2/models/{name}")
        meta = json.loads(body) if status == 200 else {}
        check(status == 200 and meta.get("name") == name, f"model metadata under the InferenceService's name {name}")
        shape = meta.get("inputs", [{}])[0].get("shape")
        check(shape == [-1, 1, 28, 28], f"input shape [-1, 1, 28, 28] (got {shape})")
        pixels, truth = test_image()
        request = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": pixels}]}
        status, body = http("POST", f"{base}/v2/models/{name}/infer", json.dumps(request).encode())
        reply = json.loads(body) if body else {}
        outputs = {o["name"]: o["data"] for o in reply.get("outputs", [])}
        label = (outputs.get("label") or [None])[0]
        check(status == 200 and isinstance(label, str) and label != "", f"infer: 200 with a label (got {status}, {label!r})")
        if truth:
            check(label == truth, f"infer: the first test image is a {truth} (got {label!r})")
        status, body = http("GET", base + "/metrics")
        lines = body.decode(errors="replace").splitlines()
        check(status == 200 and any(l.startswith("coe_") for l in lines), "/metrics: Prometheus text with coe_ lines")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=15)
                check(code == 0, f"SIGTERM: exits 0 within 15 s (exit {code})")
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                check(False, "SIGTERM: exits within 15 s")
        else:
            check(False, f"server stays up (exited {proc.returncode})")
        log.seek(0)
        if failures:
            print("--- coe serve output ---\n" + log.read()[-4000:])
        log.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--coe", required=True, help="the built coe binary")
    ap.add_argument("--source", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    a = ap.parse_args()
    coe = os.path.abspath(a.coe)
    deploy = os.path.join(a.source, "deploy", "kserve")
    rt, isvc, args = check_yaml(deploy)
    check_containerfile(deploy, coe, args)
    work = tempfile.mkdtemp(prefix="coe-kserve-")
    try:
        models = os.path.join(work, "mnt-models")
        os.mkdir(models)
        lay_out_models(os.path.abspath(a.source), models)
        run_container_command(coe, args, isvc, models)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"{len(failures)} check(s) failed:\n  " + "\n  ".join(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
