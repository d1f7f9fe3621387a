# S3 for the compose tests: s3rver (the devDependency the other tests use in-process) on the
# local Node base. Users run MinIO or a cloud S3 instead. It accepts any well-formed signature.
ARG NODE_IMAGE
FROM ${NODE_IMAGE}
ARG S3RVER_VERSION
# EXTRA_CA_CERTS: as in node.Dockerfile, for npm's downloads only.
ARG EXTRA_CA_CERTS=""
RUN if [ -n "$EXTRA_CA_CERTS" ]; then printf '%s\n' "$EXTRA_CA_CERTS" > /tmp/extra-ca.pem; export NODE_EXTRA_CA_CERTS=/tmp/extra-ca.pem; fi \
 && npm install --global --omit=dev "s3rver@${S3RVER_VERSION}" && npm cache clean --force && rm -f /tmp/extra-ca.pem \
 && useradd --system --user-group --home-dir /data --shell /usr/sbin/nologin s3 \
 && mkdir -p /data && chown s3:s3 /data
USER s3
# Takes MinIO's command line (`server <dir>`) and port (9000), so docker-compose.yml runs it
# where MinIO would be; like MinIO it starts without buckets (compose's s3-bucket job makes one).
# Path-style only: a host name without dots (`s3`) would be taken for a virtual-host bucket.
EXPOSE 9000
ENTRYPOINT ["/bin/sh", "-c", "[ \"$1\" = server ] || { echo 'usage: server <dir>' >&2; exit 2; }; exec s3rver --directory \"$2\" --address 0.0.0.0 --port 9000 --allow-mismatched-signatures --no-vhost-buckets", "s3rver"]
CMD ["server", "/data"]
