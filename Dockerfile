# syntax=docker/dockerfile:1
# imagine-bot: one image for the Discord bot and its Stable Diffusion workers (README: "Run with Docker").
#
#   docker build -t imagine-bot .          CPU, and WebGPU over Vulkan (the GPU's Vulkan driver comes from the host)
#   docker build -t imagine-bot:cuda --build-arg RUNTIME_BASE=cuda-base --build-arg CUDA_PROVIDER=yes .
#                                          NVIDIA CUDA: a CUDA 12 + cuDNN 9 base and onnxruntime's CUDA provider
#
# BASE_IMAGE: an official Node image of a version package.json's engines accept, or one laid out the same way
# (node and npm in /usr/local, a user `node` with uid 1000). EXTRA_PACKAGES: Debian/Ubuntu packages to add, e.g.
# mesa-vulkan-drivers for WebGPU on AMD or Intel GPUs.
ARG BASE_IMAGE=node:20-bookworm-slim
ARG CUDA_BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
ARG RUNTIME_BASE=${BASE_IMAGE}

# ---- build: all dependencies, TypeScript -> dist/ ----
FROM ${BASE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY tsconfig*.json ./
COPY src ./src
COPY commands ./commands
RUN npm run build

# ---- deps: the production dependencies only ----
FROM ${BASE_IMAGE} AS deps
# yes: onnxruntime's CUDA 12 provider too (downloaded by onnxruntime-node's installer, which npm ci skips).
ARG CUDA_PROVIDER=no
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# onnxruntime-node ships its binaries for every platform; only this one's stay (245 MB less).
RUN npm ci --omit=dev --no-audit --no-fund \
 && if [ "${CUDA_PROVIDER}" = yes ]; then npm run install-cuda; fi \
 && npm cache clean --force \
 && keep="node_modules/onnxruntime-node/bin/napi-v6/$(node -p 'process.platform + "/" + process.arch')" \
 && for dir in node_modules/onnxruntime-node/bin/napi-v6/*/*; do [ "$dir" = "$keep" ] || rm -r "$dir"; done

# ---- cuda-base: NVIDIA's CUDA + cuDNN runtime with BASE_IMAGE's Node and a user `node` (uid 1000) ----
FROM ${BASE_IMAGE} AS node
FROM ${CUDA_BASE_IMAGE} AS cuda-base
RUN (userdel --remove ubuntu 2> /dev/null || true) \
 && groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx

# ---- runtime ----
FROM ${RUNTIME_BASE} AS runtime
ARG EXTRA_PACKAGES=""
# tini is PID 1: it passes SIGTERM on to the process, whose graceful shutdown then runs, and reaps what exits.
# libvulkan1 is the Vulkan loader that onnxruntime's WebGPU provider (Dawn) opens; the driver comes from the host.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tini libvulkan1 ${EXTRA_PACKAGES} \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production NPM_CONFIG_UPDATE_NOTIFIER=false
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY scripts/run.mjs scripts/docker-entrypoint.sh ./scripts/
RUN mkdir models embeddings data && chown node:node models embeddings data
VOLUME ["/app/models", "/app/embeddings", "/app/data"]
USER node
# The volumes and HEALTH_FILE are set by scripts/docker-entrypoint.sh, which both of these run.
HEALTHCHECK --interval=30s --timeout=10s --start-period=5m --retries=3 CMD ["scripts/docker-entrypoint.sh", "node", "dist/src/cli/healthcheck.js"]
ENTRYPOINT ["tini", "--", "scripts/docker-entrypoint.sh"]
# What `npm start` runs, without npm: npm starts scripts through sh, which would not pass SIGTERM on to node.
CMD ["node", "dist/src/main.js"]
