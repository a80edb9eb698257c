# shellcheck shell=bash
# Versions of the local control plane, and where its build is cached (outside the repo).
# shellcheck disable=SC2034  # sourced: these are read by the scripts that source this file
K8S_VERSION=${K8S_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
# The real node stack of the "containerd" test hosts (hosts/build-node-binaries.sh); its kubelet
# is K8S_VERSION's.
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
CRI_TOOLS_VERSION=${CRI_TOOLS_VERSION:-v1.37.0}
TESTBED_CACHE=${KUBEOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubeops-node-maintenance}
TESTBED_ROOT="$TESTBED_CACHE/controlplane-k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION"
TESTBED_BIN="$TESTBED_ROOT/bin"
TESTBED_STAGES="$TESTBED_ROOT/stages"
