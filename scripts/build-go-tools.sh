#!/usr/bin/env bash
# Build the Go tools the test suite runs, from pinned versions on the Go module proxy.
# Each is built once and cached in .tools/bin; a tool that exists is never rebuilt.
# A failed build is not fatal: the tests that need that tool then fail by name
# (tests/tools.py require_tool) instead of the whole run stopping here.
#
# Cold cost on 2 cores (Go's module and build caches are shared between the builds):
#   sloth ~2 min, promtool+prometheus 3 ~8 min, kube-apiserver+etcd+kube-controller-manager
#   ~7 min, victoria-metrics+vmalert ~3 min.
set -uo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/.tools/bin"
BUILD="$PWD/.tools/build"
mkdir -p "$TOOLS" "$BUILD"

SLOTH_VERSION=v0.16.0
PROMETHEUS_MODULE_VERSION=v0.316.0   # module v0.3NN.M is Prometheus 3.NN.M
PROMETHEUS_VERSION=3.16.0
KUBERNETES_VERSION=v1.36.3
VICTORIAMETRICS_VERSION=v1.151.0

say() { echo "build-go-tools: $*" >&2; }
have() { [ -x "$TOOLS/$1" ]; }
all_have() { local t; for t in "$@"; do have "$t" || return 1; done; }

# The newest `go` directive among the modules built here (prometheus v0.316.0's go.mod).
GO_MIN=1.26.7
GO_TARBALL="https://go.dev/dl/go1.26.8.linux-amd64.tar.gz"
how_to_get_go() {
  say "Install Go $GO_MIN or later (Debian 12's golang packages are 1.19, too old), e.g.:"
  say "  curl -fsSL $GO_TARBALL | sudo tar -C /usr/local -xz"
  say "  export PATH=/usr/local/go/bin:\$PATH"
  say "then run scripts/install-tools.sh again (https://go.dev/doc/install)."
}
if ! command -v go >/dev/null; then
  say "Go is not on PATH, so sloth, promtool 3, prometheus 3, kube-apiserver, etcd,"
  say "kube-controller-manager, victoria-metrics and vmalert cannot be built; the tests"
  say "that need them will fail by name."
  how_to_get_go
  exit 0
fi
# Go 1.21 and later fetch the newer toolchain a module asks for (GOTOOLCHAIN=auto);
# older ones cannot build these modules at all.
go_version="$(go env GOVERSION 2>/dev/null || go version | awk '{print $3}')"
go_minor="$(echo "${go_version#go}" | cut -d. -f2)"
if [ "$(echo "${go_version#go}" | cut -d. -f1)" = 1 ] && [ "${go_minor:-0}" -lt 21 ]; then
  say "$go_version is too old to build the Go tools; the tests that need them will fail"
  say "by name."
  how_to_get_go
  exit 0
fi

run_logged() {  # NAME CMD...: run quietly, print the log only when it fails
  local name="$1"; shift
  local log; log="$(mktemp)"
  local start=$SECONDS
  if "$@" >"$log" 2>&1; then
    say "$name built in $((SECONDS - start)) s"
    rm -f "$log"; return 0
  fi
  cat "$log" >&2; rm -f "$log"
  say "$name failed to build ($(go version)); the tests that need it will fail by name."
  return 1
}

# go_install_as DIR LABEL LDFLAGS SUFFIX PKG@VERSION...: `go install` the commands into the
# scratch GOBIN .tools/build/DIR, then put each in .tools/bin as its name plus SUFFIX
go_install_as() {
  local gobin="$BUILD/$1" label="$2" ldflags="$3" suffix="$4"; shift 4
  mkdir -p "$gobin"
  run_logged "$label" env GOBIN="$gobin" go install -ldflags "$ldflags" "$@" || return 1
  local pkg name
  for pkg in "$@"; do
    name="${pkg%@*}"; name="${name##*/}"
    install -m 0755 "$gobin/$name" "$TOOLS/$name$suffix"
  done
}

# --- sloth (the peer the compat tests run on its own examples) -------------------------
if ! have sloth; then
  say "building sloth $SLOTH_VERSION (about 2 minutes, once)"
  run_logged sloth env GOBIN="$TOOLS" go install "github.com/slok/sloth/cmd/sloth@$SLOTH_VERSION"
fi

# --- promtool and prometheus 3.x (rule tests and end-to-end on both majors) -------------
if ! all_have promtool3 prometheus3; then
  say "building promtool and prometheus $PROMETHEUS_VERSION (about 8 minutes, once)"
  go_install_as prometheus3 "promtool+prometheus $PROMETHEUS_VERSION" \
    "-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION" 3 \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_MODULE_VERSION" \
    "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_MODULE_VERSION"
fi

# --- kube-apiserver, etcd, kube-controller-manager (the real-cluster harness) -----------
# `go install` refuses k8s.io/kubernetes (its go.mod replaces the staging modules), so they
# are built from a small local module that pins every staging module to its release.
if ! all_have kube-apiserver etcd kube-controller-manager; then
  say "building kube-apiserver, etcd and kube-controller-manager $KUBERNETES_VERSION" \
    "(about 7 minutes and 2 GB of memory, once)"
  mod="$BUILD/kube"; mkdir -p "$mod"
  build_kube() {
    go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" >/dev/null || return 1
    local upstream
    upstream="$(go env GOMODCACHE)/k8s.io/kubernetes@$KUBERNETES_VERSION/go.mod"
    local staging="v0.${KUBERNETES_VERSION#v1.}"
    {
      echo "module sloexporter.dev/kubetools"
      echo
      echo "go 1.26.0"
      echo
      echo "godebug default=go1.26"
      echo
      echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
      echo
      echo "replace ("
      grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$upstream" \
        | awk -v v="$staging" '{print "\t" $1 " => " $1 " " v}'
      echo ")"
    } >"$mod/go.mod"
    cat >"$mod/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)
GO
    local minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
    local kv="-s -w"
    local pkg
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      kv="$kv -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    done
    (cd "$mod" && go mod tidy \
      && go build -buildvcs=false -ldflags='-s -w' -o "$TOOLS/etcd" go.etcd.io/etcd/server/v3 \
      && go build -buildvcs=false -ldflags="$kv" -o "$TOOLS/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver \
      && go build -buildvcs=false -ldflags="$kv" -o "$TOOLS/kube-controller-manager" \
        k8s.io/kubernetes/cmd/kube-controller-manager)
  }
  run_logged "kube-apiserver+etcd+kube-controller-manager $KUBERNETES_VERSION" build_kube
fi

# --- victoria-metrics and vmalert (rules proven on a second engine) ---------------------
if ! all_have victoria-metrics vmalert; then
  say "building victoria-metrics and vmalert $VICTORIAMETRICS_VERSION (about 3 minutes, once)"
  go_install_as vm "victoria-metrics+vmalert $VICTORIAMETRICS_VERSION" "-s -w" "" \
    "github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics@$VICTORIAMETRICS_VERSION" \
    "github.com/VictoriaMetrics/VictoriaMetrics/app/vmalert@$VICTORIAMETRICS_VERSION"
fi
exit 0
