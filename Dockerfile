# Gatehouse: OAuth 2.1 authorization server for MCP.
#
# Sources are TypeScript loaded through tsx (a runtime dependency), so there is no build stage:
# install production dependencies, copy the sources, run as the unprivileged `node` user.
#
#   docker build -t gatehouse .
#   docker run --rm --env-file gatehouse.env gatehouse migrate
#   docker run --rm --env-file gatehouse.env -p 4000:4000 gatehouse serve
#
# Deploying it (TLS, several instances, keys, backups, upgrades): docs/deployment.md.

# Node.js 24, an LTS line (oidc-provider warns on anything but an LTS release), on Debian 13 (trixie),
# the current Debian stable.
FROM node:24-trixie-slim

WORKDIR /app

# Dependencies first, so that editing a source file does not reinstall them.
# argon2 ships prebuilt binaries for linux-x64/arm64 (glibc), so no compiler is needed.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

COPY bin/ ./bin/
COPY src/ ./src/
COPY migrations/ ./migrations/
COPY views/ ./views/

# The embedded database (used only when DATABASE_URL is unset, never in production) lives under ./data.
RUN mkdir -p /app/data && chown node:node /app/data

ENV NODE_ENV=production \
    GATEHOUSE_HOST=0.0.0.0 \
    PORT=4000 \
    GATEHOUSE_ADMIN_HOST=0.0.0.0 \
    GATEHOUSE_ADMIN_PORT=4001

# The image's own `node` user (uid 1000): the server never runs as root.
USER node

# 4000: the issuer (public). 4001: the admin console, API and /metrics; publish it only where
# administrators are.
EXPOSE 4000 4001

# Liveness: the process answers HTTP (/healthz never touches the database, so a database outage
# does not make Docker report every instance unhealthy; readiness is /readyz, for load balancers).
# node's own http(s) client, since slim images have no curl; with native TLS
# (GATEHOUSE_TLS_CERT_FILE) the certificate names the public host, not 127.0.0.1, so it is not verified.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "const tls = Boolean(process.env.GATEHOUSE_TLS_CERT_FILE); require(tls ? 'node:https' : 'node:http').get({ host: '127.0.0.1', port: process.env.PORT || 4000, path: '/healthz', rejectUnauthorized: false, timeout: 4000 }, (r) => process.exit(r.statusCode === 200 ? 0 : 1)).on('timeout', () => process.exit(1)).on('error', () => process.exit(1))"]

# `docker stop` sends this; Gatehouse then drains for at most GATEHOUSE_SHUTDOWN_TIMEOUT (8s) and
# exits 0. Give it a longer grace period than that (docker stop -t, compose stop_grace_period).
STOPSIGNAL SIGTERM

ENTRYPOINT ["node", "bin/gatehouse.js"]
CMD ["serve"]
