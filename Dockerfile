# Gatehouse: OAuth 2.1 authorization server for MCP.
#
# Sources are TypeScript loaded through tsx (a runtime dependency), so there is no build stage:
# install production dependencies, copy the sources, run as the unprivileged `node` user.
#
#   docker build -t gatehouse .
#   docker run --rm gatehouse migrate
#   docker run --rm -p 4000:4000 gatehouse serve
FROM node:22-bookworm-slim

WORKDIR /app

# Dependencies first, so that editing a source file does not reinstall them.
# argon2 ships prebuilt binaries for linux-x64/arm64 (glibc), so no compiler is needed.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

COPY bin/ ./bin/
COPY src/ ./src/
COPY migrations/ ./migrations/
COPY views/ ./views/

# The embedded database (used only when DATABASE_URL is unset) lives under ./data.
RUN mkdir -p /app/data && chown node:node /app/data

ENV NODE_ENV=production \
    GATEHOUSE_HOST=0.0.0.0 \
    PORT=4000 \
    GATEHOUSE_ADMIN_HOST=0.0.0.0 \
    GATEHOUSE_ADMIN_PORT=4001

USER node

# 4000: the issuer (public). 4001: the admin console; publish it only where administrators are.
EXPOSE 4000 4001

ENTRYPOINT ["node", "bin/gatehouse.js"]
CMD ["serve"]
