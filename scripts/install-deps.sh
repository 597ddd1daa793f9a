#!/usr/bin/env bash
# Installs every Debian 12 package coe's build, tests, benchmarks and fuzzers need.
# Usage: sudo scripts/install-deps.sh [--with-training]
#   --with-training  also installs python3-onnx (only for models/train_zoo.py)
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
pkgs=(
  build-essential cmake pkg-config git ca-certificates
  libopencv-dev libdnnl-dev
  # oneDNN's CMake config (dnnl-config.cmake) requires OpenCL, which libdnnl-dev only
  # recommends (scripts/fresh-machine.sh found it: configure fails without it).
  ocl-icd-opencl-dev
  nlohmann-json3-dev libtomlplusplus-dev libcli11-dev libcpp-httplib-dev
  libspdlog-dev libfmt-dev libboost-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  clang-14 libclang-rt-14-dev
  wrk haproxy iproute2 curl ccache stress clang-format-14 chromium
  dataset-fashion-mnist zlib1g-dev libdeflate-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler python3-grpcio python3-grpc-tools python3-protobuf
  python3 python3-numpy python3-dev pybind11-dev python3-pytest python3-pandas python3-matplotlib python3-venv python3-setuptools python3-pip python3-yaml
  # The image-classifier conformance corpus (tests/zoo/make_corpus.py, tests/zoo_test.cc)
  # and bench/model_zoo_speed: torchvision's models exported by PyTorch.
  python3-torch python3-torchvision
)
# Node and npm for the OpenAI client test (tests/openai_client): Debian's, unless a node
# is already installed (another vendor's nodejs package conflicts with Debian's npm).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then pkgs+=(nodejs npm); fi
if [ "${1:-}" = "--with-training" ]; then pkgs+=(python3-onnx); fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
