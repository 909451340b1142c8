# signoff as a small image: built in a Rust image, run as a non-root user in a slim Debian one.
#   docker build -t signoff .
#   docker run -p 7800:7800 -v signoff-data:/var/lib/signoff \
#     -v ./policies:/etc/signoff/policies:ro -v ./directory.yaml:/etc/signoff/directory.yaml:ro signoff
# The demo directory serves only on loopback: a container is given a directory of its own.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p signoff \
    && strip target/release/signoff

FROM debian:bookworm-slim
# CA certificates: Slack, webhooks, SMTP with TLS and the single sign-on issuer are reached
# over HTTPS. (Not pinned: Debian's security updates to the bundle are what we want.)
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 signoff \
    && useradd --system --uid 10001 --gid signoff --home-dir /var/lib/signoff --shell /usr/sbin/nologin signoff \
    && mkdir -p /var/lib/signoff /etc/signoff/policies \
    && chown signoff:signoff /var/lib/signoff
COPY --from=build /src/target/release/signoff /usr/local/bin/signoff
USER 10001:10001
ENV SIGNOFF_LISTEN=0.0.0.0:7800 \
    SIGNOFF_DATA=/var/lib/signoff \
    SIGNOFF_POLICIES=/etc/signoff/policies \
    SIGNOFF_DIRECTORY=/etc/signoff/directory.yaml \
    SIGNOFF_LOG_FORMAT=json
VOLUME ["/var/lib/signoff"]
EXPOSE 7800
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/signoff", "health", "--url", "http://127.0.0.1:7800"]
ENTRYPOINT ["/usr/local/bin/signoff"]
CMD ["serve"]
