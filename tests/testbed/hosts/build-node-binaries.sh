#!/usr/bin/env bash
# Build (once) and cache the real node stack of the "containerd" test hosts, all static Go
# binaries from the Go module proxy: kubelet (k8s.io/kubernetes@$K8S_VERSION, the control plane's
# version, with the test bed's go.mod recipe), containerd, containerd-shim-runc-v2 and ctr
# (github.com/containerd/containerd/v2, tags no_btrfs no_devmapper no_zfs) and crictl
# (sigs.k8s.io/cri-tools). runc and the CNI plugins come from Debian's packages (build-image.sh).
#
# Cached under $TESTBED_CACHE/node-<versions>-<recipe>/bin by versions and recipe; built in a temp
# dir renamed into place only when complete, so an interrupted build never leaves a half cache.
#
# Usage: build-node-binaries.sh        prints the directory (bin/ inside) on stdout
#        build-node-binaries.sh --dir  prints the directory it would use, builds nothing
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../versions.sh"
source "$HERE/../k8s-module.sh"

step() { printf '[testbed-node %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { printf '[testbed-node] FAILED at step: %s\n' "$CURRENT_STEP" >&2; }
trap fail ERR
CURRENT_STEP=start

# Bump RECIPE when changing the build steps below (it is part of the cache directory's name).
RECIPE=1
CONTAINERD_TAGS="no_btrfs no_devmapper no_zfs"
dir="$TESTBED_CACHE/node-k8s-$K8S_VERSION-containerd-$CONTAINERD_VERSION-crictl-$CRI_TOOLS_VERSION-r$RECIPE"
if [[ ${1:-} == --dir ]]; then echo "$dir"; exit 0; fi
if [[ -f "$dir/manifest.json" ]]; then
  step "cached: $dir"
  echo "$dir"
  exit 0
fi

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$TESTBED_CACHE"
work=$(mktemp -d "$TESTBED_CACHE/.build-node.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/out/bin"
started=$SECONDS

# tools_module DIR MODULE VERSION PACKAGE...: a module in DIR requiring MODULE@VERSION whose
# tools.go imports the PACKAGEs, tidied (that downloads what they need).
tools_module() {
  local dir=$1 module=$2 version=$3 pkg
  shift 3
  mkdir -p "$dir" && cd "$dir"
  [[ -f go.mod ]] || printf 'module kubeops.local/testbed/%s\n\ngo 1.26.0\n\nrequire %s %s\n' \
    "$(basename "$dir")" "$module" "$version" > go.mod
  { printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for pkg in "$@"; do printf '\t_ "%s"\n' "$pkg"; done
    printf ')\n'; } > tools.go
  go mod tidy -e >/dev/null 2>&1 || true
  go mod download
}

# --- kubelet --------------------------------------------------------------------------------
CURRENT_STEP="go build kubelet $K8S_VERSION"
step "$CURRENT_STEP"
mkdir -p "$work/kubelet" && (cd "$work/kubelet" && k8s_gomod kubeops.local/testbed/kubelet "$work/stubs")
tools_module "$work/kubelet" k8s.io/kubernetes "$K8S_VERSION" k8s.io/kubernetes/cmd/kubelet
go build -trimpath -ldflags "$(k8s_ldflags)" -o "$work/out/bin/kubelet" k8s.io/kubernetes/cmd/kubelet

# --- containerd -------------------------------------------------------------------------------
CURRENT_STEP="go build containerd $CONTAINERD_VERSION (tags: $CONTAINERD_TAGS)"
step "$CURRENT_STEP"
ctrd=github.com/containerd/containerd/v2
tools_module "$work/containerd" "$ctrd" "$CONTAINERD_VERSION" \
  "$ctrd/cmd/containerd" "$ctrd/cmd/containerd-shim-runc-v2" "$ctrd/cmd/ctr"
ldflags="-s -w -X $ctrd/version.Version=$CONTAINERD_VERSION -X $ctrd/version.Package=$ctrd"
for cmd in containerd containerd-shim-runc-v2 ctr; do
  CURRENT_STEP="go build $cmd $CONTAINERD_VERSION"
  go build -trimpath -tags "$CONTAINERD_TAGS" -ldflags "$ldflags" -o "$work/out/bin/$cmd" "$ctrd/cmd/$cmd"
done

# --- crictl -----------------------------------------------------------------------------------
CURRENT_STEP="go build crictl $CRI_TOOLS_VERSION"
step "$CURRENT_STEP"
tools_module "$work/crictl" sigs.k8s.io/cri-tools "$CRI_TOOLS_VERSION" sigs.k8s.io/cri-tools/cmd/crictl
go build -trimpath -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION" \
  -o "$work/out/bin/crictl" sigs.k8s.io/cri-tools/cmd/crictl

# --- check and publish --------------------------------------------------------------------------
# Each one's output is read whole (no `| grep -q`: SIGPIPE under pipefail).
verify() {  # verify WANT BINARY ARGS...: the binary runs and prints WANT
  local want=$1 out
  shift
  CURRENT_STEP="verify: $(basename "$1") ${*:2}"
  out=$("$@" 2>&1)
  [[ $out == *"$want"* ]] || { printf '[testbed-node] %s printed no %s:\n%s\n' "$*" "$want" "$out" >&2; return 1; }
}
verify "$K8S_VERSION" "$work/out/bin/kubelet" --version
verify "$CONTAINERD_VERSION" "$work/out/bin/containerd" --version
verify "$CONTAINERD_VERSION" "$work/out/bin/ctr" --version
verify "${CRI_TOOLS_VERSION#v}" "$work/out/bin/crictl" --version
CURRENT_STEP="verify: static binaries (no program interpreter)"
python3 - "$work"/out/bin/* <<'PY'
import struct, sys
for path in sys.argv[1:]:
    with open(path, "rb") as handle:
        head = handle.read(64)
        assert head[:4] == b"\x7fELF" and head[4] == 2, "%s is not a 64-bit ELF binary" % path
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        handle.seek(phoff)
        table = handle.read(phentsize * phnum)
    types = [struct.unpack_from("<I", table, i * phentsize)[0] for i in range(phnum)]
    assert 3 not in types, "%s is dynamically linked (it has a PT_INTERP)" % path
PY
cat > "$work/out/manifest.json" <<EOF
{"kubelet": "$K8S_VERSION", "containerd": "$CONTAINERD_VERSION", "crictl": "$CRI_TOOLS_VERSION",
 "go": "$(go env GOVERSION)", "containerd_tags": "$CONTAINERD_TAGS", "recipe": $RECIPE,
 "built": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "build_seconds": $((SECONDS - started))}
EOF
CURRENT_STEP="publish $dir"
rm -rf "$dir"
mv "$work/out" "$dir"
step "built in $((SECONDS - started))s: $dir"
echo "$dir"
