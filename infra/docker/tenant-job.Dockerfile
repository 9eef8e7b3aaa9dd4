# syntax=docker/dockerfile:1.7
# The tenant job's image: `tenant-job ingest|transform|sync`, run by each
# tenant's Cloud Run jobs as the tenant's own service account. The control
# plane gives every execution its arguments and its allow-listed environment
# (job_contract::env); nothing else is configured here and no secret is baked
# in (the job reads the tenant's Xero tokens from the tenant's own secret).
#
# Build from the repository's root:
#   docker build -f infra/docker/tenant-job.Dockerfile -t tenant-job .

FROM rust:1.95.0-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin tenant-job \
    && install -D -m 0755 target/release/tenant-job /out/tenant-job

FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
COPY --from=build /out/tenant-job /usr/local/bin/
WORKDIR /home/nonroot
USER 65532:65532
# A job runs to its end and is judged by its exit code: there is nothing to
# probe while it runs.
HEALTHCHECK NONE
ENTRYPOINT ["/usr/local/bin/tenant-job"]
