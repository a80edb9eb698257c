# shellcheck shell=bash
# Versions of the local control plane, and where its build is cached (outside the repo).
# shellcheck disable=SC2034  # sourced: these are read by the scripts that source this file
# K8S_DEFAULT_VERSION: the control plane of the whole suite, and of kubectl, etcd and kwok for every
# other. K8S_MATRIX_VERSIONS: the older minors (each one's newest patch on the Go module proxy) the
# module-level integration subset also runs against (noxfile.py, README's support matrix); their
# builds (K8S_VERSION=<one of them> build-binaries.sh) hold only their own kube-apiserver,
# kube-controller-manager and kube-scheduler, beside hard links to the default build's kubectl,
# etcd and kwok, and are keyed by that kubectl's version too.
K8S_DEFAULT_VERSION=v1.36.3
K8S_MATRIX_VERSIONS="v1.34.4 v1.35.4"
K8S_VERSION=${K8S_VERSION:-$K8S_DEFAULT_VERSION}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
# The real node stack of the "containerd" test hosts (hosts/build-node-binaries.sh); its kubelet
# is K8S_VERSION's.
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
CRI_TOOLS_VERSION=${CRI_TOOLS_VERSION:-v1.37.0}
TESTBED_CACHE=${KUBEOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubeops-node-maintenance}
TESTBED_DEFAULT_ROOT="$TESTBED_CACHE/controlplane-k8s-$K8S_DEFAULT_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION"
TESTBED_ROOT=$TESTBED_DEFAULT_ROOT
if [[ $K8S_VERSION != "$K8S_DEFAULT_VERSION" ]]; then
  TESTBED_ROOT="$TESTBED_CACHE/controlplane-k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-kubectl-$K8S_DEFAULT_VERSION"
fi
TESTBED_BIN="$TESTBED_ROOT/bin"
TESTBED_STAGES="$TESTBED_ROOT/stages"
