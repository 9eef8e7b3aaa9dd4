# syntax=docker/dockerfile:1.7
# The control plane's image: one binary that serves `--role control` (the
# operator API, onboarding, webhooks, the scheduler tick and the reconciler's
# workers) or `--role query` (the query service), chosen by the environment
# variable LEDGERLAKE_SERVE_ROLE, so both Cloud Run services run this image.
#
# Build from the repository's root (the whole workspace is the context):
#   docker build -f infra/docker/control-plane.Dockerfile -t control-plane .
# infra/cloudbuild.yaml builds and pushes it with the commit SHA as its tag. The
# templates (SQL models, semantic model, prompts) are compiled into the
# binary, so the runtime image carries the binary alone. No secret is baked
# in: they reach the service as environment variables from Secret Manager.

# Pinned by exact tag; bump with the toolchain CI uses.
FROM rust:1.95.0-bookworm AS build
WORKDIR /src
COPY . .
# Cargo's registry and target directory are cache mounts: a rebuild recompiles
# only what changed (bundled DuckDB is compiled once per builder cache). The
# binaries are copied out in the same step, since a cache mount is not part of
# the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin control-plane --bin healthcheck \
    && install -D -m 0755 target/release/control-plane /out/control-plane \
    && install -D -m 0755 target/release/healthcheck /out/healthcheck

# glibc, libstdc++ (DuckDB is C++) and CA roots, no shell, no package
# manager; pinned by digest. The "nonroot" variant runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
COPY --from=build /out/control-plane /out/healthcheck /usr/local/bin/
WORKDIR /home/nonroot
# Cloud Run sends traffic to 8080; logs in Cloud Logging's JSON shape.
ENV LEDGERLAKE_LISTEN=0.0.0.0:8080 \
    LEDGERLAKE_LOG_FORMAT=json \
    LEDGERLAKE_SERVE_ROLE=all \
    LEDGERLAKE_DATA_DIR=/home/nonroot/data \
    RUST_LOG=info
USER 65532:65532
EXPOSE 8080
# Cloud Run ignores HEALTHCHECK (terraform sets its startup and liveness
# probes on /readyz and /healthz); this one serves `docker run` and Compose.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/healthcheck"]
ENTRYPOINT ["/usr/local/bin/control-plane"]
CMD ["serve"]
