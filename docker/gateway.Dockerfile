# cairn-gateway: `docker build -f docker/gateway.Dockerfile -t ghcr.io/cairn-io/cairn-gateway:v0.1.0 .`
# (from the repository root). Multi-stage: build with the Rust toolchain, run on distroless as
# non-root. The operator runs it as `cairn-gateway serve` with its CAIRN_* environment.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libclang-dev clang && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p cairn-gateway && cp target/release/cairn-gateway /cairn-gateway

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /cairn-gateway /usr/local/bin/cairn-gateway
USER 65532:65532
EXPOSE 9000 9001
ENTRYPOINT ["/usr/local/bin/cairn-gateway"]
CMD ["serve"]
