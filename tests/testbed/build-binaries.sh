#!/usr/bin/env bash
# Build and cache, by version, the real Kubernetes control plane the tests run against:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (k8s.io/kubernetes),
# etcd (go.etcd.io/etcd/server/v3) and kwok (sigs.k8s.io/kwok) plus kwok's stage configs.
# Everything comes from the Go module proxy. Builds go into a temp dir that is renamed into
# place only when complete, so an interrupted build never leaves a half cache.
#
# K8S_VERSION=<another version> (one of versions.sh's K8S_MATRIX_VERSIONS, for the module-level
# integration subset): builds only that version's kube-apiserver, kube-controller-manager and
# kube-scheduler and hard-links kubectl, etcd, kwok and the stage configs of the default build
# (built first when missing) beside them. One build per cache directory at a time (a lock): a
# test fixture that asks while bootstrap's background build runs waits for it.
set -euo pipefail

source "$(dirname "$0")/versions.sh"
source "$(dirname "$0")/k8s-module.sh"

step() { printf '[testbed-build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { printf '[testbed-build] FAILED at step: %s\n' "$CURRENT_STEP" >&2; }
trap fail ERR
CURRENT_STEP=start

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

cached() {
  if [[ -x "$TESTBED_BIN/kube-apiserver" && -x "$TESTBED_BIN/etcd" && -x "$TESTBED_BIN/kwok" && -d "$TESTBED_STAGES" ]]; then
    step "cached: $TESTBED_BIN"
    exit 0
  fi
}
cached
shared_only=""  # another version than the default: its server binaries, the rest linked from the default build
if [[ $K8S_VERSION != "$K8S_DEFAULT_VERSION" ]]; then
  shared_only=1
  CURRENT_STEP="the default build ($K8S_DEFAULT_VERSION) for kubectl, etcd and kwok"
  K8S_VERSION=$K8S_DEFAULT_VERSION bash "$0"
fi

mkdir -p "$TESTBED_CACHE"
exec 9>"$TESTBED_ROOT.lock"
flock 9
cached
work=$(mktemp -d "$TESTBED_CACHE/.build.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/out/bin" "$work/out/stages"

# --- Kubernetes ---------------------------------------------------------------------------
CURRENT_STEP="resolve k8s.io/kubernetes@$K8S_VERSION"
step "$CURRENT_STEP"
mkdir -p "$work/k8s" && cd "$work/k8s"
k8s_gomod kubeops.local/testbed/k8s "$work/stubs"
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
CURRENT_STEP="go mod tidy (k8s.io/kubernetes@$K8S_VERSION): downloads the modules"
step "$CURRENT_STEP"
go mod tidy -e >/dev/null 2>&1 || true
go mod download
ldflags=$(k8s_ldflags)
k8s_cmds=(kube-apiserver kube-controller-manager kube-scheduler)
[[ -n $shared_only ]] || k8s_cmds+=(kubectl)
for cmd in "${k8s_cmds[@]}"; do
  CURRENT_STEP="go build $cmd $K8S_VERSION"
  step "$CURRENT_STEP"
  go build -trimpath -ldflags "$ldflags" -o "$work/out/bin/$cmd" "k8s.io/kubernetes/cmd/$cmd"
done

if [[ -n $shared_only ]]; then
  CURRENT_STEP="link kubectl, etcd, kwok and the stage configs of $TESTBED_DEFAULT_ROOT"
  step "$CURRENT_STEP"
  for bin in kubectl etcd kwok; do
    ln "$TESTBED_DEFAULT_ROOT/bin/$bin" "$work/out/bin/$bin"
  done
  cp -al "$TESTBED_DEFAULT_ROOT/stages/." "$work/out/stages/"
else
# --- etcd ---------------------------------------------------------------------------------
CURRENT_STEP="go build etcd $ETCD_VERSION"
step "$CURRENT_STEP"
mkdir -p "$work/etcd" && cd "$work/etcd"
printf 'module kubeops.local/testbed/etcd\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > go.mod
printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go
go mod tidy -e >/dev/null 2>&1 || true
go build -trimpath -ldflags "-s -w" -o "$work/out/bin/etcd" go.etcd.io/etcd/server/v3

# --- kwok ---------------------------------------------------------------------------------
CURRENT_STEP="go build kwok $KWOK_VERSION"
step "$CURRENT_STEP"
mkdir -p "$work/kwok" && cd "$work/kwok"
printf 'module kubeops.local/testbed/kwok\n\ngo 1.26.0\n\nrequire sigs.k8s.io/kwok %s\n' "$KWOK_VERSION" > go.mod
printf '//go:build tools\n\npackage tools\n\nimport _ "sigs.k8s.io/kwok/cmd/kwok"\n' > tools.go
go mod tidy -e >/dev/null 2>&1 || true
go build -trimpath -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" -o "$work/out/bin/kwok" sigs.k8s.io/kwok/cmd/kwok
CURRENT_STEP="copy kwok stage configs"
kwok_dir=$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
cp -r "$kwok_dir/kustomize/stage/." "$work/out/stages/"
chmod -R u+w "$work/out/stages"
fi

# --- check and publish ----------------------------------------------------------------------
CURRENT_STEP="verify binaries"
# Each one's output is read whole: `binary --version | grep -q` fails now and then under
# pipefail, when grep stops reading at its match and the binary's next write gets SIGPIPE.
verify() {  # verify WANT BINARY ARGS...: the binary runs and prints WANT
  local want=$1 out
  shift
  CURRENT_STEP="verify binaries: $(basename "$1") ${*:2}"
  out=$("$@" 2>&1)
  if [[ $out != *"$want"* ]]; then
    printf '[testbed-build] %s printed no %s:\n%s\n' "$*" "$want" "$out" >&2
    return 1
  fi
}
verify "$K8S_DEFAULT_VERSION" "$work/out/bin/kubectl" version --client
verify "$K8S_VERSION" "$work/out/bin/kube-apiserver" --version
verify "$K8S_VERSION" "$work/out/bin/kube-controller-manager" --version
verify "$K8S_VERSION" "$work/out/bin/kube-scheduler" --version
verify "${ETCD_VERSION#v}" "$work/out/bin/etcd" --version
CURRENT_STEP="publish $TESTBED_ROOT"
rm -rf "$TESTBED_ROOT"
mv "$work/out" "$TESTBED_ROOT"
step "built into $TESTBED_ROOT"
