# pgcached container image: built in a Rust image, run from a slim Debian one.
#   docker build -t pgcached .
#   docker run -p 6432:6432 -e PGCACHED_UPSTREAM=postgres://pgcached:secret@db:5432/app pgcached

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p pgcached \
 && install -m 0755 target/release/pgcached /usr/local/bin/pgcached

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --shell /usr/sbin/nologin pgcached
COPY --from=build /usr/local/bin/pgcached /usr/local/bin/pgcached
USER pgcached
# Inside a container pgcached must listen on every interface, not the loopback default.
ENV PGCACHED_LISTEN=0.0.0.0:6432 \
    PGCACHED_METRICS_LISTEN=0.0.0.0:9187
EXPOSE 6432 9187
ENTRYPOINT ["pgcached"]
