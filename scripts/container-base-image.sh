#!/usr/bin/env bash
# A stand-in for the official Node image, for machines that reach Debian's package mirror but no container
# registry: Debian bookworm (debootstrap) with this machine's node and npm in /usr/local and the user `node`
# (uid 1000), laid out like node:<version>-bookworm-slim. It trusts the certificate authorities this machine adds
# to its own (/usr/local/share/ca-certificates, e.g. a TLS-inspecting proxy's), so npm inside reaches the registry
# as npm here does. Prints the image name; builds it only once. Needs root, debootstrap and podman.
set -euo pipefail

version=$(node --version)
image=${1:-localhost/node-debootstrap:${version#v}-bookworm}
if podman image exists "$image"; then
  echo "$image"
  exit 0
fi

cache=${CONTAINER_CACHE_DIR:-/var/tmp/imagine-bot-containers}
mkdir -p "$cache/debootstrap-debs"
rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT

debootstrap --variant=minbase --include=ca-certificates --cache-dir="$cache/debootstrap-debs" bookworm "$rootfs" \
  "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >&2

npm_dir=$(npm root -g)/npm
install -D -m 0755 "$(command -v node)" "$rootfs/usr/local/bin/node"
mkdir -p "$rootfs/usr/local/lib/node_modules"
cp -a "$npm_dir" "$rootfs/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
if compgen -G '/usr/local/share/ca-certificates/*.crt' > /dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  chroot "$rootfs" update-ca-certificates >&2
fi
chroot "$rootfs" groupadd --gid 1000 node
chroot "$rootfs" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

tar -C "$rootfs" --numeric-owner -c . |
  podman import --change "ENV NODE_VERSION=${version#v}" --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["node"]' - "$image" >&2
echo "$image"
