# flashgate container image: a release build on the Rust image, run on slim Debian.
# Build: docker build -t flashgate .   (docker-compose.yml builds it for you)

# The builder matches the runtime's Debian release (bookworm) so the binary's glibc is there.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
# Dependencies first, in a layer of their own that a change to flashgate's code does not
# invalidate: the manifests, with placeholders for the targets Cargo.toml declares.
# Every workspace member's manifest too: cargo loads them all, whichever package it builds.
COPY Cargo.toml Cargo.lock ./
COPY benches/peer-axum/Cargo.toml ./benches/peer-axum/
RUN mkdir -p src benches/peer-axum/src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/edge.rs \
    && echo 'fn main() {}' > benches/peer-axum/src/main.rs \
    && cargo build --release --locked --bin flashgate \
    && rm -r src benches
# Everything the build reads (tests/it/container.rs checks this list against Cargo.toml's
# targets and the include_str!/migrate! paths in src/): sources, the Lua scripts, the SQL
# migrations (embedded by sqlx::migrate! at compile time), and the declared bench target.
COPY src ./src
COPY lua ./lua
COPY migrations ./migrations
COPY benches ./benches
# Newer than the placeholders' build, whatever the copied files' dates: cargo rebuilds.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin flashgate

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/flashgate --create-home flashgate
COPY --from=builder /src/target/release/flashgate /usr/local/bin/flashgate
COPY config/flashgate.toml /etc/flashgate/flashgate.toml
# Relative paths in the config (data/...) resolve here.
WORKDIR /var/lib/flashgate
USER flashgate
# Inside a container the listener must accept connections from outside it.
ENV FLASHGATE_HTTP__ADDR=0.0.0.0:8080
EXPOSE 8080
# Healthy once the gateway answers ready (Redis and the database reachable, writer not
# stalled); the binary itself asks, so the slim image needs no curl.
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=3 CMD ["flashgate", "healthcheck"]
ENTRYPOINT ["flashgate"]
CMD ["serve", "--config", "/etc/flashgate/flashgate.toml"]
