#!/usr/bin/env bash
# Builds the image and runs the container tests (test/container/, not part of `npm test`) with podman:
#   - the image: non-root, no dev dependencies, the Vulkan loader; its default command (what `npm start` runs)
#     answers /imagine against the fake Discord (host network), its health check says when it is logged in, and
#     `podman stop` (SIGTERM) tells waiting users and exits 0;
#   - compose.yaml, run by podman-compose: Redis, the bot and two workers; a job goes through Redis, a job whose
#     worker is killed in the middle is delivered once, and a crashed worker is restarted.
#
#   scripts/container-test.sh
#
# Needs root, podman (with runc or crun), podman-compose (Debian: apt-get install podman-compose; installed here
# when missing), and `npm ci` done. Environment:
#   BASE_IMAGE   the Node image to build on, e.g. node:20-bookworm-slim. Default: a stand-in made once by
#                scripts/container-base-image.sh (Debian's packages and this machine's node), for machines that
#                reach no container registry.
#   REDIS_IMAGE  the Redis image compose.yaml runs, e.g. redis:7-bookworm. Default: a stand-in from BASE_IMAGE
#                with Debian's redis-server.
#   IMAGE        the tag to build; default localhost/imagine-bot:test. KEEP_IMAGE=1 keeps it afterwards.
# Images and build caches live in podman's storage (/var/lib/containers); nothing large goes into the repository.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cache=${CONTAINER_CACHE_DIR:-/var/tmp/imagine-bot-containers}
mkdir -p "$cache"
# Some kernels refuse the rlimits podman sets by default; the tests need none.
if [[ -z "${CONTAINERS_CONF:-}" ]]; then
  export CONTAINERS_CONF="$cache/containers.conf"
  printf '[containers]\ndefault_ulimits = []\n' > "$CONTAINERS_CONF"
fi
command -v podman > /dev/null || { echo "podman is not installed (Debian: apt-get install podman runc)" >&2; exit 1; }
command -v podman-compose > /dev/null || (apt-get update && apt-get install -y --no-install-recommends podman-compose)
[[ -d node_modules/vitest ]] || { echo "run npm ci first" >&2; exit 1; }

base=${BASE_IMAGE:-$(scripts/container-base-image.sh)}
redis=${REDIS_IMAGE:-localhost/redis-on-$(echo "${base##*/}" | tr ':' '-')}
if [[ -z "${REDIS_IMAGE:-}" ]] && ! podman image exists "$redis"; then
  printf '%s\n' \
    'ARG BASE_IMAGE' \
    'FROM ${BASE_IMAGE}' \
    'RUN apt-get update && apt-get install -y --no-install-recommends redis-server && rm -rf /var/lib/apt/lists/* \' \
    ' && mkdir /data && chown redis:redis /data' \
    'WORKDIR /data' \
    'USER redis' \
    'CMD ["redis-server"]' |
    podman build --network host --build-arg BASE_IMAGE="$base" --tag "$redis" --file - "$cache"
fi

image=${IMAGE:-localhost/imagine-bot:test}
# The docker format keeps the HEALTHCHECK (OCI images have no place for it).
podman build --network host --format docker --build-arg BASE_IMAGE="$base" --tag "$image" .
[[ -n "${KEEP_IMAGE:-}" ]] || trap 'podman rmi --force "$image" > /dev/null' EXIT

IMAGINE_BOT_IMAGE="$image" REDIS_IMAGE="$redis" npx vitest run --config vitest.container.config.ts
