# flashgate container image: a release build on the Rust image, run on slim Debian.
# Build: docker build -t flashgate .   (docker-compose.yml builds it for you)

# The builder matches the runtime's Debian release (bookworm) so the binary's glibc is there.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY lua ./lua
RUN cargo build --release --locked --bin flashgate

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
ENTRYPOINT ["flashgate"]
CMD ["serve", "--config", "/etc/flashgate/flashgate.toml"]
