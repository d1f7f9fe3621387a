# NATS for the compose tests where the official image cannot be pulled: Debian's nats-server
# (2.9, the oldest version nixcas supports: docs/nats-notes.md) on a local Debian base. Used like
# the official image: the compose command is nats-server's arguments. wget: the healthcheck.
# The package makes the system user `nats` the server runs as.
ARG DEBIAN_IMAGE
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends nats-server wget \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown nats:nats /data
USER nats
EXPOSE 4222 6222 8222
ENTRYPOINT ["nats-server"]
CMD ["--help"]
