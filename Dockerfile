# syntax=docker/dockerfile:1
# itnio-otp-grpc: the gRPC facade over ITNIO's OTP API, in live mode.
#
#   docker build -t itnio-otp-grpc .
#   docker run -p 50051:50051 -p 9090:9090 -e ITNIO_API_KEY=... -e ITNIO_API_SECRET_FILE=/run/secrets/itnio \
#     -v "$PWD/secret:/run/secrets/itnio:ro" itnio-otp-grpc
#
# Stages: cargo-chef computes a dependency recipe so that the dependency layer is rebuilt only
# when Cargo.toml/Cargo.lock change; the runtime is distroless (glibc, libgcc, CA certificates,
# no shell), running as the non-root user 65532. No protoc is needed: build.rs uses protox.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.73
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin itnio-otp-grpc \
    && cp target/release/itnio-otp-grpc /usr/local/bin/itnio-otp-grpc

# Debian 12 like the builder, so the dynamically linked binary finds the glibc it was built for.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=builder /usr/local/bin/itnio-otp-grpc /usr/local/bin/itnio-otp-grpc
ENV ITNIO_MODE=live \
    GRPC_LISTEN_ADDR=0.0.0.0:50051 \
    METRICS_LISTEN_ADDR=0.0.0.0:9090 \
    LOG_FORMAT=json
EXPOSE 50051 9090
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/itnio-otp-grpc"]
