#!/usr/bin/env bash
# Installs what building and testing Cairn needs beyond the Rust toolchain, if it is missing:
# - libclang (RocksDB's Rust bindings are generated with bindgen at build time), from Debian;
# - boto3 and the aws CLI (the Python smoke test drives the gateway with them), from PyPI.
# Idempotent and quiet when everything is there.
set -euo pipefail

have_libclang() {
  ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 ||
    { [ -n "${LIBCLANG_PATH:-}" ] && ls "$LIBCLANG_PATH"/libclang*.so* >/dev/null 2>&1; }
}

if ! have_libclang; then
  echo "setup: installing libclang-dev (needed to build RocksDB's bindings)"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libclang-dev >/dev/null
fi

if ! python3 -c 'import boto3' 2>/dev/null || ! command -v aws >/dev/null 2>&1; then
  echo "setup: installing boto3 and awscli from PyPI"
  python3 -m pip install -q --disable-pip-version-check boto3 awscli 2>&1 | grep -v "as the 'root' user" || true
fi
