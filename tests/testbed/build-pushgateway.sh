#!/usr/bin/env bash
# Build and cache the Prometheus Pushgateway the metrics tests push to, from the Go module proxy
# (github.com/prometheus/pushgateway). The cache directory is named by the version and a hash of
# this script (what the build is made of), so a change to either builds anew and an old build
# is never taken for a new one. Built in a temporary directory renamed into place only when
# complete. Prints the binary's path on stdout.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
source "$here/versions.sh"
PUSHGATEWAY_VERSION=${PUSHGATEWAY_VERSION:-v1.11.1}

step() { printf '[pushgateway-build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
key=$( { echo "$PUSHGATEWAY_VERSION"; go env GOVERSION; cat "$0"; } | sha256sum | cut -c1-12)
root="$TESTBED_CACHE/pushgateway-$PUSHGATEWAY_VERSION-$key"
cached() {
  if [[ -x "$root/bin/pushgateway" ]]; then
    step "cached: $root/bin/pushgateway"
    echo "$root/bin/pushgateway"
    exit 0
  fi
}
cached
mkdir -p "$TESTBED_CACHE"
# one build at a time (parallel test workers may ask together); the others then find it cached
exec 9>"$TESTBED_CACHE/.pushgateway-build.lock"
flock 9
cached
work=$(mktemp -d "$TESTBED_CACHE/.build-pushgateway.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src" "$work/out/bin"
cd "$work/src"
printf 'module kubeops.local/testbed/pushgateway\n\ngo 1.26.0\n\nrequire github.com/prometheus/pushgateway %s\n' \
  "$PUSHGATEWAY_VERSION" > go.mod
printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/prometheus/pushgateway"\n' > tools.go
step "go mod tidy (github.com/prometheus/pushgateway@$PUSHGATEWAY_VERSION): downloads the modules"
go mod tidy -e >/dev/null 2>&1 || true
step "go build pushgateway $PUSHGATEWAY_VERSION"
ldflags="-s -w -X github.com/prometheus/common/version.Version=${PUSHGATEWAY_VERSION#v}"
go build -trimpath -ldflags "$ldflags" -o "$work/out/bin/pushgateway" github.com/prometheus/pushgateway
out=$("$work/out/bin/pushgateway" --version 2>&1)
if [[ $out != *"${PUSHGATEWAY_VERSION#v}"* ]]; then
  printf '[pushgateway-build] pushgateway --version printed no %s:\n%s\n' "${PUSHGATEWAY_VERSION#v}" "$out" >&2
  exit 1
fi
mv -T "$work/out" "$root"
step "built into $root"
echo "$root/bin/pushgateway"
