# cairn-storage-node: `docker build -f docker/storage-node.Dockerfile -t ghcr.io/cairn-io/cairn-storage-node:v0.1.0 .`
# (from the repository root). Configured entirely by CAIRN_* variables (see README).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p cairn-storage-node && cp target/release/cairn-storage-node /cairn-storage-node

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /cairn-storage-node /usr/local/bin/cairn-storage-node
USER 65532:65532
EXPOSE 7000
ENTRYPOINT ["/usr/local/bin/cairn-storage-node"]
