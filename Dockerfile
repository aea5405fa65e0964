# The reference host, commerce-server, in a small runtime image.
#   docker build -t commerce-server .
#   docker run -p 8080:8080 commerce-server            # the in-memory default
# With PostgreSQL, MongoDB and Redis: see compose.yaml. Not built by CI (its machine has no
# Docker engine).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target directory are cached between builds; the binary is copied out of the
# cache mount so the next stage can take it, and stripped: the release profile keeps line
# tables for profiling, which the image does without (~150 MB).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p commerce-http --bin commerce-server \
    && cp target/release/commerce-server /usr/local/bin/commerce-server \
    && strip /usr/local/bin/commerce-server

FROM debian:bookworm-slim
# CA certificates for Stripe, S3 and TLS database connections; nothing else is needed.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/commerce --create-home commerce \
    && mkdir -p /var/lib/commerce/media \
    && chown -R commerce /var/lib/commerce
COPY --from=build /usr/local/bin/commerce-server /usr/local/bin/commerce-server
USER commerce
WORKDIR /var/lib/commerce
ENV HOST=0.0.0.0 \
    PORT=8080 \
    MEDIA_DIR=/var/lib/commerce/media \
    LOG_FORMAT=json
EXPOSE 8080
# Probes: GET /healthz (the process is up) and GET /readyz (every backend answers).
ENTRYPOINT ["/usr/local/bin/commerce-server"]
CMD ["serve"]
