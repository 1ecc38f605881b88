#!/usr/bin/env bash
# Build the sloexporter container image without a daemon and without a registry:
# a Debian bookworm root filesystem from Debian packages (mmdebstrap), the package and
# its dependencies in /opt/venv, committed by buildah as a `FROM scratch` image.
#
#   bash scripts/build-image.sh [IMAGE]            # default localhost/sloexporter:<version>
#   SAVE=sloexporter.tar bash scripts/build-image.sh   # also write a docker-archive
#                                                      # (docker load / kind load image-archive)
#
# It is the same image as the Dockerfile's (non-root user 65532, port 9469, entrypoint
# `sloexporter`, command `serve`), for machines where no base image can be pulled.
# Needs root (or a user namespace), Debian's buildah, mmdebstrap and network access to
# the Debian mirror and PyPI. The root filesystem and the dependency wheels are cached
# in .tools/image/ (about 3 and 2 minutes the first time); a rebuild takes about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

VERSION="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' sloexporter/__init__.py)"
IMAGE="${1:-localhost/sloexporter:$VERSION}"
CACHE="$PWD/.tools/image"
PACKAGES="python3,python3-venv,ca-certificates,tzdata"
export STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}"   # works inside containers, no overlay mount
for tool in buildah mmdebstrap; do
  command -v "$tool" >/dev/null || {
    echo "error: $tool is missing: apt-get install buildah mmdebstrap (Debian 12)" >&2; exit 2; }
done
mkdir -p "$CACHE"

rootfs="$CACHE/rootfs-bookworm-$(echo "$PACKAGES" | sha256sum | cut -c1-12).tar"
if [ ! -s "$rootfs" ]; then
  phase "Debian bookworm root filesystem with $PACKAGES (mmdebstrap)" "about 3 minutes, once"
  mmdebstrap --quiet --variant=apt --format=tar --include="$PACKAGES" \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    bookworm "$rootfs.part"
  mv "$rootfs.part" "$rootfs"
fi

phase "wheels of the package and its dependencies" "about 2 minutes the first time"
wheels="$CACHE/wheels"
mkdir -p "$wheels"
rm -f "$wheels"/sloexporter-*.whl  # the package itself is rebuilt every time
# offline from the cache when every dependency is there, else from PyPI
PIP_FIND_LINKS="" .venv/bin/pip wheel -q --disable-pip-version-check --no-index \
  --no-build-isolation --find-links "$wheels" -w "$wheels" . 2>/dev/null \
  || PIP_FIND_LINKS="" .venv/bin/pip wheel -q --disable-pip-version-check \
    --find-links "$wheels" -w "$wheels" .

phase "the image's file tree: /opt/venv in the root filesystem" "about a minute"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir "$work/root"
tar -C "$work/root" -xf "$rootfs"
mkdir -p "$work/root/tmp/wheels"
cp "$wheels"/*.whl "$work/root/tmp/wheels/"
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$work/root" /bin/sh -euc '
  python3 -m venv /opt/venv
  /opt/venv/bin/pip install -q --disable-pip-version-check --no-index \
    --find-links /tmp/wheels --no-compile sloexporter
  /opt/venv/bin/python -m compileall -q /opt/venv/lib
  /opt/venv/bin/pip uninstall -q -y pip setuptools
  rm -rf /tmp/wheels /root/.cache'
tar -C "$work/root" -cf "$work/root.tar" .

phase "committing $IMAGE with buildah (FROM scratch)" "about 20 seconds"
ctr="$(buildah from scratch)"
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
buildah add --quiet "$ctr" "$work/root.tar" / >/dev/null
buildah config \
  --entrypoint '["/opt/venv/bin/sloexporter"]' --cmd serve \
  --user 65532:65532 --port 9469/tcp --workingdir / \
  --env PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin \
  --env PYTHONDONTWRITEBYTECODE=1 --env PYTHONUNBUFFERED=1 \
  --label org.opencontainers.image.title=sloexporter \
  --label org.opencontainers.image.version="$VERSION" \
  --label org.opencontainers.image.licenses=Apache-2.0 \
  "$ctr"
buildah commit --quiet --rm "$ctr" "$IMAGE" >/dev/null
if [ -n "${SAVE:-}" ]; then
  buildah push --quiet "$IMAGE" "docker-archive:$SAVE:$IMAGE"
  echo "    saved to $SAVE" >&2
fi
phase_done
echo "built $IMAGE" >&2
echo "$IMAGE"
