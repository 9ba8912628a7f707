#!/usr/bin/env bash
# `scripts/check-images.sh [OUT [NAME...]]`: checks the images scripts/build-images.sh wrote (OUT,
# default target/images; every NAME of gateway, storage-node, operator by default): each archive's
# config runs as 65532:65532 with the version and source labels, it imports into containerd
# (`ctr images import`), and its binary starts inside it (`ctr run ... --help`, runc). Starts a
# containerd of its own (state in a temporary directory, the native snapshotter: no overlay
# mounts needed) and stops it at the end. Prints each image's size. Needs containerd, runc and
# python3; scripts/setup.sh installs them. Run as root (containerd and runc need it).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/images}
shift || true
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(gateway storage-node operator)

for tool in containerd ctr runc python3; do
  command -v "$tool" >/dev/null || { echo "check-images: $tool is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/cairn-ctr.XXXXXX)
sock="$work/containerd.sock"
cat >"$work/config.toml" <<EOF
version = 2
root = "$work/root"
state = "$work/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$sock"
EOF
containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
ctrd=$!
cleanup() {
  kill "$ctrd" 2>/dev/null || true
  wait "$ctrd" 2>/dev/null || true
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT
c() { ctr --address "$sock" --namespace cairn-check "$@"; }
for _ in $(seq 50); do c version >/dev/null 2>&1 && break; sleep 0.2; done
c version >/dev/null || { cat "$work/containerd.log" >&2; exit 1; }

for name in "${names[@]}"; do
  archive="$out/cairn-$name.oci.tar"
  [ -f "$archive" ] || { echo "check-images: $archive missing (scripts/build-images.sh)" >&2; exit 1; }
  # The image's name and config, read from the archive itself.
  read -r image user version source < <(python3 - "$archive" <<'PY'
import json, sys, tarfile
t = tarfile.open(sys.argv[1])
blob = lambda d: json.load(t.extractfile("blobs/" + d.replace(":", "/")))
index = json.load(t.extractfile("index.json"))
m = index["manifests"][0]
config = blob(blob(m["digest"])["config"]["digest"])["config"]
labels = config.get("Labels", {})
print(m["annotations"]["org.opencontainers.image.ref.name"], config.get("User", ""),
      labels.get("org.opencontainers.image.version", "-"), labels.get("org.opencontainers.image.source", "-"))
PY
)
  [ "$user" = "65532:65532" ] || { echo "check-images: $image runs as '$user', not 65532:65532" >&2; exit 1; }
  [ "$version" != "-" ] && [ "$source" != "-" ] || { echo "check-images: $image lacks version/source labels" >&2; exit 1; }
  c images import --snapshotter native "$archive" >/dev/null
  c images ls -q | grep -qx "$image" || { echo "check-images: $image not in containerd after import" >&2; exit 1; }
  if ! c run --rm --snapshotter native "$image" "check-$name" "/usr/local/bin/cairn-$name" --help >"$work/help.txt" 2>&1; then
    echo "check-images: cairn-$name --help failed in $image:" >&2; cat "$work/help.txt" >&2; exit 1
  fi
  grep -q "Usage: cairn-$name" "$work/help.txt" || { echo "check-images: unexpected --help of $image:" >&2; cat "$work/help.txt" >&2; exit 1; }
  size=$(c images ls | awk -v i="$image" '$1 == i {print $4, $5}')
  printf '%-50s user %s, version %s: imported (%s), --help runs\n' "$image" "$user" "$version" "$size"
done
