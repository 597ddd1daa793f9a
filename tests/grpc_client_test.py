#!/usr/bin/python3
"""`coe serve --grpc-port` answered by a client coe did not write: Python's grpcio.

Generates Python stubs from proto/open_inference.proto (grpc_tools.protoc, Debian's
python3-grpc-tools) into a temporary folder, starts `coe serve --grpc-port 0 --port 0`
on a three-tier cascade of the bundled zoo, sends Fashion-MNIST test images through
gRPC (FP32 typed contents, FP32 raw contents, UINT8 raw contents) and through the REST
API (urllib, JSON), and checks that every answer (label, exit tier, degraded flag, and
the probabilities, bit for bit) is the same. Prints the bytes per image of each request
encoding (serialized message or body size) and of the responses.

    /usr/bin/python3 tests/grpc_client_test.py --coe build/coe [--images 1000]
Exits 0 when all answers agree, 1 otherwise (and without Python's grpcio: a missing
dependency fails the test, it is not skipped).
"""
import argparse
import gzip
import json
import os
import queue
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

IMAGES = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
CASCADE = """name = "fashion"
[[tiers]]
members = ["mlp256x2", "cnn8_16"]
min_agreement = 1.0
[[tiers]]
members = ["cnn_small", "cnn_medium"]
min_agreement = 1.0
[[tiers]]
members = ["resnet_small"]
"""
OUTPUTS = ["label", "exit_tier", "degraded", "probabilities"]


def read_images(n):
    with gzip.open(IMAGES, "rb") as f:
        data = f.read()
    magic, count, rows, cols = struct.unpack(">IIII", data[:16])
    assert magic == 2051 and rows == 28 and cols == 28, "not an IDX image file"
    n = min(n, count)
    return [data[16 + i * 784:16 + (i + 1) * 784] for i in range(n)]


def make_stubs(source, folder):
    from grpc_tools import protoc  # Debian: python3-grpc-tools
    import grpc_tools
    proto_include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    args = ["protoc", "-I" + os.path.join(source, "proto"), "-I" + proto_include, "--python_out=" + folder,
            "--grpc_python_out=" + folder, os.path.join(source, "proto", "open_inference.proto")]
    if protoc.main(args) != 0:
        sys.exit("grpc_tools.protoc failed on proto/open_inference.proto")
    sys.path.insert(0, folder)
    import open_inference_pb2
    import open_inference_pb2_grpc
    return open_inference_pb2, open_inference_pb2_grpc


def start_server(coe, source, folder):
    cascade = os.path.join(folder, "cascade.toml")
    with open(cascade, "w") as f:
        f.write(CASCADE)
    proc = subprocess.Popen([coe, "serve", "--cascade", cascade, "--models",
                             os.path.join(source, "models/zoo/catalogue.toml"), "--port", "0", "--grpc-port", "0",
                             "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l) for l in proc.stdout], daemon=True).start()
    http_port = grpc_port = None
    deadline = time.time() + 120
    while (http_port is None or grpc_port is None) and time.time() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            if proc.poll() is not None:
                sys.exit("coe serve exited: " + proc.stderr.read())
            continue
        if "gRPC" in line:
            grpc_port = int(line.rsplit(":", 1)[1])
        elif "http://" in line:
            http_port = int(line.split("http://", 1)[1].split(" ", 1)[0].rsplit(":", 1)[1])
    if http_port is None or grpc_port is None:
        proc.kill()
        sys.exit("coe serve printed no ports")
    return proc, http_port, grpc_port


def rest_infer(port, batch, as_float):
    """as_float: pixels written as JSON floats ("0.0", "12.0", as json.dumps writes a
    Python float), else as integers ("0", "12"), the most compact JSON holds."""
    data = [float(p) if as_float else p for img in batch for p in img]
    body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [len(batch), 1, 28, 28],
                                   "data": data}],
                       "outputs": [{"name": o} for o in OUTPUTS]}, separators=(",", ":")).encode()
    req = urllib.request.Request("http://127.0.0.1:%d/v2/models/fashion/infer" % port, data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        reply = r.read()
    j = json.loads(reply)
    out = {o["name"]: o["data"] for o in j["outputs"]}
    probs = b"".join(struct.pack("<f", p) for p in out["probabilities"])  # JSON text -> float32, exact
    return len(body), len(reply), list(zip(out["label"], out["exit_tier"], out["degraded"])), probs


def unpack_raw(pb, res):
    """(labels, exit tiers, degraded, probability bytes) from raw_output_contents."""
    raw = {o.name: res.raw_output_contents[i] for i, o in enumerate(res.outputs)}
    labels, b, p = [], raw["label"], 0
    while p < len(b):
        (n,) = struct.unpack_from("<I", b, p)
        labels.append(b[p + 4:p + 4 + n].decode())
        p += 4 + n
    tiers = list(struct.unpack("<%di" % (len(raw["exit_tier"]) // 4), raw["exit_tier"]))
    degraded = [x != 0 for x in raw["degraded"]]
    return list(zip(labels, tiers, degraded)), raw["probabilities"]


def unpack_typed(res):
    out = {o.name: o.contents for o in res.outputs}
    rows = list(zip([s.decode() for s in out["label"].bytes_contents], list(out["exit_tier"].int_contents),
                    list(out["degraded"].bool_contents)))
    return rows, struct.pack("<%df" % len(out["probabilities"].fp32_contents), *out["probabilities"].fp32_contents)


def grpc_request(pb, batch, encoding):
    q = pb.ModelInferRequest(model_name="fashion")
    t = q.inputs.add(name="input", shape=[len(batch), 1, 28, 28])
    if encoding == "fp32_typed":
        t.datatype = "FP32"
        t.contents.fp32_contents.extend(float(p) for img in batch for p in img)
    elif encoding == "fp32_raw":
        t.datatype = "FP32"
        q.raw_input_contents.append(b"".join(struct.pack("<784f", *img) for img in batch))
    else:  # uint8_raw: the pixel bytes as they are (coe reads each as its value, 0..255)
        t.datatype = "UINT8"
        q.raw_input_contents.append(b"".join(batch))
    for o in OUTPUTS:
        q.outputs.add(name=o)
    return q


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--coe", required=True)
    ap.add_argument("--source", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=100)
    a = ap.parse_args()
    try:
        import grpc  # Debian: python3-grpcio
        import grpc_tools  # noqa: F401  Debian: python3-grpc-tools
    except ImportError as e:
        print("FAIL: %s (scripts/install-deps.sh installs python3-grpcio and python3-grpc-tools)" % e)
        return 1
    images = read_images(a.images)
    with tempfile.TemporaryDirectory() as folder:
        pb, pb_grpc = make_stubs(a.source, folder)
        proc, http_port, grpc_port = start_server(a.coe, a.source, folder)
        ok = False
        try:
            channel = grpc.insecure_channel("127.0.0.1:%d" % grpc_port,
                                            options=[("grpc.max_send_message_length", 64 << 20),
                                                     ("grpc.max_receive_message_length", 64 << 20)])
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            assert stub.ServerLive(pb.ServerLiveRequest(), timeout=30).live
            assert stub.ServerReady(pb.ServerReadyRequest(), timeout=30).ready
            meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="fashion"), timeout=30)
            assert list(meta.inputs[0].shape) == [-1, 1, 28, 28], meta
            try:
                stub.ModelInfer(pb.ModelInferRequest(model_name="nope"), timeout=30)
                sys.exit("an unknown model was answered")
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.NOT_FOUND, e

            encodings = ["fp32_typed", "fp32_raw", "uint8_raw"]
            rests = ["rest", "rest_float"]
            rows = {k: [] for k in rests + encodings}
            probs = {k: b"" for k in rows}
            req_bytes = {k: 0 for k in rows}
            res_bytes = {k: 0 for k in rows}
            for start in range(0, len(images), a.batch):
                batch = images[start:start + a.batch]
                for k in rests:
                    qb, rb, r, p = rest_infer(http_port, batch, k == "rest_float")
                    rows[k] += r
                    probs[k] += p
                    req_bytes[k] += qb
                    res_bytes[k] += rb
                for enc in encodings:
                    q = grpc_request(pb, batch, enc)
                    res = stub.ModelInfer(q, timeout=300)
                    r, p = unpack_raw(pb, res) if enc.endswith("raw") else unpack_typed(res)
                    rows[enc] += r
                    probs[enc] += p
                    req_bytes[enc] += q.ByteSize()
                    res_bytes[enc] += res.ByteSize()
            n = len(images)
            ok = True
            for enc in encodings + ["rest_float"]:
                diff = [i for i in range(n) if rows[enc][i] != rows["rest"][i]]
                same_probs = probs[enc] == probs["rest"]
                print("%-15s vs REST: %d/%d answers equal (label, exit_tier, degraded), probabilities %s"
                      % (("REST " if enc.startswith("rest") else "gRPC ") + enc, n - len(diff), n, "bit-identical" if same_probs else "DIFFER"))
                if diff or not same_probs or len(rows[enc]) != n:
                    ok = False
                    for i in diff[:5]:
                        print("  image %d: gRPC %s, REST %s" % (i, rows[enc][i], rows["rest"][i]))
            tiers = [0, 0, 0]
            for _, t, _ in rows["rest"]:
                tiers[t - 1] += 1
            print("exits per tier: %s (of %d images, batches of %d)" % (tiers, n, a.batch))
            print("bytes per image, request (serialized message / JSON body) and response, all 4 outputs:")
            for k in rests + encodings:
                name = {"rest": "REST JSON ints", "rest_float": "REST JSON floats"}.get(k, "gRPC " + k)
                print("  %-16s request %8.1f   response %7.1f" % (name, req_bytes[k] / n, res_bytes[k] / n))
            print("RESULT %s: %d images; request bytes per image: raw gRPC FP32 %.0f, raw gRPC UINT8 %.0f, "
                  "JSON REST %.0f (integer pixels) / %.0f (float pixels)"
                  % ("equal" if ok else "DIFFERENT", n, req_bytes["fp32_raw"] / n, req_bytes["uint8_raw"] / n,
                     req_bytes["rest"] / n, req_bytes["rest_float"] / n))
            channel.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = -1
            if code != 0:
                print("coe serve exited %s: %s" % (code, proc.stderr.read()[-2000:]))
                ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
