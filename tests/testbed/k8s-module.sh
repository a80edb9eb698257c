# shellcheck shell=bash
# The test bed's recipe for building binaries of k8s.io/kubernetes@$K8S_VERSION from the Go module
# proxy: sourced by build-binaries.sh (control plane) and hosts/build-node-binaries.sh (kubelet).
# Needs versions.sh sourced first, and a `step` function for progress lines.

# k8s_gomod MODULE STUBS: write ./go.mod, a module MODULE requiring k8s.io/kubernetes@$K8S_VERSION.
# k8s.io/kubernetes requires every staging module at v0.0.0 and replaces it with a local path;
# a consumer must replace each with the published v0.X.Y (or a stub under STUBS when it is not
# published).
k8s_gomod() {
  local module=$1 stubs=$2 gomod staging_version mod stub
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  staging_version="v0.${K8S_VERSION#v1.}"
  printf 'module %s\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes %s\n' "$module" "$K8S_VERSION" > go.mod
  sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod" | while read -r mod; do
    if go mod download "$mod@$staging_version" >/dev/null 2>&1; then
      echo "replace $mod => $mod $staging_version" >> go.mod
    else
      stub="$stubs/$mod"; mkdir -p "$stub"
      printf 'module %s\n\ngo 1.26.0\n' "$mod" > "$stub/go.mod"
      echo "replace $mod => $stub" >> go.mod
      step "  $mod@$staging_version is not published; replaced by an empty stub (not used by the binaries)"
    fi
  done
}

# k8s_ldflags: the -ldflags that make a binary report $K8S_VERSION (as a release build does).
k8s_ldflags() {
  local minor=${K8S_VERSION#v1.} build_date pkg flags="-s -w"
  minor=${minor%%.*}
  build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
  done
  echo "$flags"
}
