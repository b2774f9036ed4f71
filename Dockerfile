# syntax=docker/dockerfile:1
# The tinysns service image: /usr/local/bin/{coordinator,tsd,synchronizer,tsc,tinysns-gateway}.
#   docker build -t tinysns:latest .
# The operator's image is operator/Dockerfile (same build context: the workspace root).

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# protoc comes from protoc-bin-vendored and SQLite is bundled: no extra packages needed.
# TLS (gRPC and amqps://) is rustls with ring, built in by default.
# Cache mounts keep the registry and target dir between builds; binaries are copied out of
# the cached target dir because it is not part of the image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        --bin coordinator --bin tsd --bin synchronizer --bin tsc --bin tinysns-gateway \
    && mkdir -p /out \
    && cp target/release/coordinator target/release/tsd target/release/synchronizer target/release/tsc \
        target/release/tinysns-gateway /out/

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# uid/gid 10001 matches TINYSNS_UID in the operator's pod security context.
RUN groupadd --system --gid 10001 tinysns \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/tinysns --create-home tinysns
COPY --from=builder /out/ /usr/local/bin/
USER 10001:10001
WORKDIR /var/lib/tinysns
ENV RUST_LOG=info
# coordinator 9000 (clients) and 29000 (members), tsd 10000 (clients) and 30000 (members),
# synchronizer 9100 (health): the operator's defaults
EXPOSE 9000 9100 10000 29000 30000
CMD ["coordinator"]
