# cairn-storage-node: `docker build -f docker/storage-node.Dockerfile -t ghcr.io/cairn-io/cairn-storage-node:v0.1.0 .`
# (from the repository root). Multi-stage: build with the Rust toolchain, run on distroless/cc as
# non-root. scripts/build-images.sh builds the same image without a Docker daemon (buildah, FROM
# scratch): the stripped binary at /usr/local/bin/cairn-storage-node, user 65532, the same entrypoint,
# ports and labels (a test compares the two).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p cairn-storage-node --bin cairn-storage-node \
 && objcopy --strip-all target/release/cairn-storage-node /cairn-storage-node

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=v0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="cairn-storage-node" \
      org.opencontainers.image.description="Cairn storage node: erasure-coded shards on disk with per-block checksums" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$REVISION" \
      org.opencontainers.image.source="https://github.com/cairn-io/cairn" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /cairn-storage-node /usr/local/bin/cairn-storage-node
USER 65532:65532
WORKDIR /home/nonroot
EXPOSE 7000
ENTRYPOINT ["/usr/local/bin/cairn-storage-node"]
