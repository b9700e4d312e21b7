# syntax=docker/dockerfile:1
# hg-auth-sidecar image: build with dev dependencies, ship production dependencies only.
#   docker build -t hg-auth-sidecar .
# Node 26, the Active LTS line (Node 20 reached end of life in April 2026, and fastify's
# cookie@2 needs Node 22+). The code itself still runs on Node 20.18+ (package.json engines).
# Pin NODE_IMAGE to a digest (node:26-trixie-slim@sha256:...) in CI for reproducible builds.
ARG NODE_IMAGE=node:26-trixie-slim

FROM ${NODE_IMAGE} AS build
# No compiler: bcrypt@6 ships N-API prebuilds (linux x64 and arm64, glibc and musl, and
# arm). On a platform without one, add python3, make and g++ here for node-gyp.
WORKDIR /app
COPY package.json package-lock.json ./
# The npm cache survives between builds (BuildKit); nothing of it reaches the image.
RUN --mount=type=cache,target=/root/.npm,sharing=locked npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY config ./config
RUN npm run build && chmod 0755 dist/cli/bin.cjs
RUN --mount=type=cache,target=/root/.npm,sharing=locked npm prune --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE} AS runtime
# tini as PID 1: Node handles SIGTERM itself (drain, then exit 0) and tini forwards it
# unchanged, but Node does not reap orphaned children the way an init must.
# npm, npx, corepack and yarn are removed: nothing runs them at runtime, and each is
# attack surface and scanner noise.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack /opt/yarn-* \
           /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack /usr/local/bin/yarn /usr/local/bin/yarnpkg \
 && ln -s /app/dist/cli/bin.cjs /usr/local/bin/hg-sidecar \
 && groupadd --system --gid 10001 hg \
 && useradd --system --uid 10001 --gid hg --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin hg

WORKDIR /app
ENV NODE_ENV=production
# Code and config stay owned by root: the process cannot rewrite what it runs. Under
# NODE_ENV=production the sidecar refuses to start without DATABASE_URL and UPSTREAM_URL;
# nothing in /app needs to be writable (`demo --ephemeral` keeps its data under /tmp).
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/config ./config
# `hg-sidecar` (a link to dist/cli/bin.cjs, made above) is on PATH: `hg-sidecar migrate`
# in a Job, `kubectl exec ... -- hg-sidecar token create ...`.

LABEL org.opencontainers.image.title="hg-auth-sidecar" \
      org.opencontainers.image.description="Authentication sidecar / reverse proxy for HarborGuard scan services" \
      org.opencontainers.image.licenses="Apache-2.0"

# Numeric so that Kubernetes' runAsNonRoot can verify it without a runAsUser.
USER 10001:10001
# 8080 proxy, 9090 ops (health, readiness, metrics). The admin port 9091 listens on
# 127.0.0.1 only and is not published.
EXPOSE 8080 9090
# No HEALTHCHECK: Kubernetes probes GET /healthz and /readyz on the ops port.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/cli/bin.cjs", "serve"]
