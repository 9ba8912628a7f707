#!/usr/bin/env bash
# Builds the OCI images of cairn-gateway, cairn-storage-node and cairn-operator without a
# container daemon, with Debian's buildah, from binaries already built:
#
#   scripts/build-images.sh --release            # cargo build --release, then the images (real use)
#   scripts/build-images.sh                      # from target/debug (what CI checks; no new build)
#   scripts/build-images.sh --bin-dir DIR --registry registry.example.com/cairn --tag v0.1.0
#
# Each image is FROM scratch with the same layout as docker/*.Dockerfile (distroless/cc nonroot):
# the stripped binary at /usr/local/bin/cairn-NAME, only the shared libraries `ldd` lists (and the
# dynamic loader), /etc/passwd and /etc/group with nonroot (65532), /tmp, the CA bundle; it runs
# as 65532:65532 and carries the org.opencontainers.image.* labels (version, source, revision).
# The results are OCI archives, OUT/cairn-NAME.oci.tar (default target/images), named
# REGISTRY/cairn-NAME:TAG (default ghcr.io/cairn-io, v + the workspace version). Load them with
#   ctr -n k8s.io images import target/images/cairn-gateway.oci.tar     (containerd, k3s, kind)
# or push them with `skopeo copy oci-archive:FILE docker://REGISTRY/cairn-NAME:TAG`.
# Needs buildah and binutils (objcopy); scripts/setup.sh installs them.
set -euo pipefail
cd "$(dirname "$0")/.."

release=no
bin_dir=""
out=target/images
registry=${CAIRN_IMAGE_REGISTRY:-ghcr.io/cairn-io}
tag=${CAIRN_IMAGE_TAG:-}
names=(gateway storage-node operator)
while [ $# -gt 0 ]; do
  case "$1" in
    --release) release=yes ;;
    --bin-dir) bin_dir=$2; shift ;;
    --out) out=$2; shift ;;
    --registry) registry=$2; shift ;;
    --tag) tag=$2; shift ;;
    --only) names=("$2"); shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "build-images: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
tag=${tag:-v$version}
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
source_url=https://github.com/cairn-io/cairn
# Reproducible: the image's dates are the commit's.
epoch=$(git log -1 --format=%ct 2>/dev/null || echo 0)

if [ "$release" = yes ]; then
  cargo build --release --locked -p cairn-gateway -p cairn-storage-node -p cairn-operator \
    --bin cairn-gateway --bin cairn-storage-node --bin cairn-operator
  bin_dir=${bin_dir:-target/release}
fi
bin_dir=${bin_dir:-target/debug}

for tool in buildah objcopy ldd; do
  command -v "$tool" >/dev/null || { echo "build-images: $tool is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A private, daemonless image store (vfs needs no mount privileges) thrown away at the end.
bah() { buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs "$@"; }

description() {
  case "$1" in
    gateway) echo "Cairn gateway: the S3 API, the replicated index and the erasure-coded data path" ;;
    storage-node) echo "Cairn storage node: erasure-coded shards on disk with per-block checksums" ;;
    operator) echo "Cairn Kubernetes operator: ObjectStore, Bucket, LifecyclePolicy, ReplicationRule" ;;
  esac
}

for name in "${names[@]}"; do
  bin="$bin_dir/cairn-$name"
  [ -x "$bin" ] || { echo "build-images: $bin not found (build it, or pass --release)" >&2; exit 1; }
  image="$registry/cairn-$name:$tag"
  root="$work/rootfs-$name"
  mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp" "$root/home/nonroot"
  chmod 1777 "$root/tmp"
  objcopy --strip-all "$bin" "$root/usr/local/bin/cairn-$name"
  # The shared libraries the binary needs, and the dynamic loader, at the paths ldd names.
  for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
    cp --parents -L "$lib" "$root/"
  done
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
  [ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  chown -R 65532:65532 "$root/home/nonroot"

  c=$(bah from --quiet scratch)
  bah copy --quiet "$c" "$root/" / >/dev/null
  args=(--user 65532:65532 --workingdir /home/nonroot
    --env PATH=/usr/local/bin --env HOME=/home/nonroot
    --entrypoint "[\"/usr/local/bin/cairn-$name\"]"
    --label "org.opencontainers.image.title=cairn-$name"
    --label "org.opencontainers.image.description=$(description "$name")"
    --label "org.opencontainers.image.version=$tag"
    --label "org.opencontainers.image.revision=$revision"
    --label "org.opencontainers.image.source=$source_url"
    --label "org.opencontainers.image.licenses=Apache-2.0")
  case "$name" in
    gateway) args+=(--cmd serve --port 9000 --port 9001) ;;
    storage-node) args+=(--port 7000) ;;
    operator) args+=(--port 8080) ;;
  esac
  bah config "${args[@]}" "$c"
  bah commit --quiet --format oci --timestamp "$epoch" --rm "$c" "$image" >/dev/null
  rm -f "$out/cairn-$name.oci.tar"
  bah push --quiet "$image" "oci-archive:$out/cairn-$name.oci.tar:$image"
  printf '%-22s %-50s binary %5d MB (unstripped %4d MB), archive %5d MB\n' "cairn-$name" "$image" \
    $(( $(stat -c %s "$root/usr/local/bin/cairn-$name") / 1000000 )) \
    $(( $(stat -c %s "$bin") / 1000000 )) \
    $(( $(stat -c %s "$out/cairn-$name.oci.tar") / 1000000 ))
done
