# cairn-operator: `docker build -f docker/operator.Dockerfile -t ghcr.io/cairn-io/cairn-operator:v0.1.0 .`
# (from the repository root). TLS to the API server uses rustls with the ring provider: no
# OpenSSL in the image.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p cairn-operator --bin cairn-operator && cp target/release/cairn-operator /cairn-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /cairn-operator /usr/local/bin/cairn-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/cairn-operator"]
