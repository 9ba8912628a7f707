# cairn-gateway: `docker build -f docker/gateway.Dockerfile -t ghcr.io/cairn-io/cairn-gateway:v0.1.0 .`
# (from the repository root). Multi-stage: build with the Rust toolchain, run on distroless/cc as
# non-root. scripts/build-images.sh builds the same image without a Docker daemon (buildah, FROM
# scratch): the stripped binary at /usr/local/bin/cairn-gateway, user 65532, the same entrypoint,
# ports and labels (a test compares the two).
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libclang-dev clang && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p cairn-gateway --bin cairn-gateway \
 && objcopy --strip-all target/release/cairn-gateway /cairn-gateway

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=v0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="cairn-gateway" \
      org.opencontainers.image.description="Cairn gateway: the S3 API, the replicated index and the erasure-coded data path" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$REVISION" \
      org.opencontainers.image.source="https://github.com/cairn-io/cairn" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /cairn-gateway /usr/local/bin/cairn-gateway
USER 65532:65532
WORKDIR /home/nonroot
EXPOSE 9000 9001
ENTRYPOINT ["/usr/local/bin/cairn-gateway"]
CMD ["serve"]
