#!/usr/bin/env bash
# Install everything the tests and the demo need, on a fresh machine, idempotently:
# Debian packages, a virtualenv with the pinned Python requirements, and the Go-built control
# plane. All of it is cached outside the repo (~/.cache/kubeops-node-maintenance), so a warm
# run takes seconds. Prints the virtualenv's bin directory on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
source "$here/testbed/versions.sh"
say() { printf '[bootstrap %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- Debian packages ------------------------------------------------------------------------
# openssl: test-bed certificates; git, rsync, shellcheck: ansible-test sanity; chromium: the HTML
# report rendered in a headless browser; the rest: QEMU test hosts.
apt_packages=(openssl git make rsync shellcheck chromium)
if [[ -f "$here/testbed/hosts/apt-packages.txt" ]]; then
  mapfile -t -O "${#apt_packages[@]}" apt_packages < <(grep -v '^#' "$here/testbed/hosts/apt-packages.txt" | grep .)
fi
missing=()
for pkg in "${apt_packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ $status == *"install ok installed"* ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# The three builds below are independent and use different resources (pip and debootstrap
# mostly wait on the network and the disk, the Go build on the CPU), so on a cold machine they
# run side by side; warm, each one finds its cache and returns at once.

# --- Python virtualenv ----------------------------------------------------------------------
build_venv() {
  local venv=$1 want have
  want=$(cat "$repo/tests/requirements.txt" "$repo/requirements.txt" | sha256sum | cut -c1-16)
  have=$(cat "$venv/.requirements-hash" 2>/dev/null || true)
  if [[ "$want" != "$have" || ! -x "$venv/bin/python" ]]; then
    say "virtualenv $venv (requirements changed or missing)"
    # The hash is written last: an interrupted install leaves no hash and is redone next time.
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip >&2
    "$venv/bin/pip" install -q -r "$repo/tests/requirements.txt" -r "$repo/requirements.txt" >&2
    echo "$want" > "$venv/.requirements-hash"
  fi
}
venv="$TESTBED_CACHE/venv"
# ansible-test sanity's own virtualenvs (one per test, pip from PyPI: about 8 minutes cold, most of
# it waiting on the network) are primed in the background as soon as ours is ready, beside the Go
# build, when they are missing; tests/sanity.sh takes the same lock, so the sanity stage waits for
# them rather than building them again. Log: $TESTBED_CACHE/sanity-venvs.log.
prime_sanity_venvs() {
  [[ -d $HOME/.ansible/test/venv/sanity.pylint ]] && return 0
  say "ansible-test sanity's virtualenvs: primed in the background (log: $TESTBED_CACHE/sanity-venvs.log)"
  mkdir -p "$TESTBED_CACHE"
  PATH="$venv/bin:$PATH" nohup bash "$here/sanity.sh" --prime-venvs > "$TESTBED_CACHE/sanity-venvs.log" 2>&1 &
}
{ build_venv "$venv" && prime_sanity_venvs; } &
venv_pid=$!

# --- QEMU test host image (if the test-host builder exists) -----------------------------------
image_pid=""
if [[ -x "$here/testbed/hosts/build-image.sh" ]]; then
  bash "$here/testbed/hosts/build-image.sh" >&2 &
  image_pid=$!
fi

# --- Control plane binaries and the Pushgateway (Go module proxy) -----------------------------
failed=()
bash "$here/testbed/build-binaries.sh" || failed+=("control plane binaries (tests/testbed/build-binaries.sh)")
# The Pushgateway the metrics test pushes to: built in the background after the control plane
# (both are CPU-bound) and not waited for, off the critical path; the test's fixture runs the same
# script, which waits on the build's lock (or builds, and fails naming the step, itself).
mkdir -p "$TESTBED_CACHE"
nohup bash "$here/testbed/build-pushgateway.sh" > "$TESTBED_CACHE/pushgateway-build.log" 2>&1 &
wait "$venv_pid" || failed+=("virtualenv $venv")

# --- BEGIN version matrix (noxfile.py; tests/run.sh runs it) ------------------------------------
# nox (tests/matrix/nox.sh: a small virtualenv of its own), the matrix's virtualenvs (one per
# ansible-core line; they copy ansible.posix from the main one, so they come after it), and the
# control planes of the other Kubernetes minors (K8S_MATRIX_VERSIONS: their kube-apiserver,
# controller-manager and scheduler, one minor after the other, CPU-bound like the Pushgateway).
# Both in the background and not waited for: tests/run.sh's matrix waits on the lock below
# (.matrix-venvs.lock) and build-binaries.sh on its own; a warm run finds everything cached at
# once. Logs: $TESTBED_CACHE/matrix-venvs.log, matrix-controlplanes.log.
# The lock is taken here and held by the background job alone (it inherits the descriptor), so that
# tests/run.sh, right after, cannot take it first; a build still running from before keeps it.
exec 8>"$TESTBED_CACHE/.matrix-venvs.lock"
if flock -n 8; then
  KUBEOPS_MATRIX_LOCKED=1 bash "$here/matrix/nox.sh" --install-only > "$TESTBED_CACHE/matrix-venvs.log" 2>&1 &
fi
exec 8>&-
# At niceness 5, as the matrix that needs them: on a cold machine they build while pytest's host
# chain (which does not) runs.
(
  for version in $K8S_MATRIX_VERSIONS; do
    K8S_VERSION=$version nice -n 5 bash "$here/testbed/build-binaries.sh"
  done
) > "$TESTBED_CACHE/matrix-controlplanes.log" 2>&1 &
# --- END version matrix ---------------------------------------------------------------------
if [[ -n $image_pid ]]; then
  wait "$image_pid" || failed+=("test host image (tests/testbed/hosts/build-image.sh)")
fi
# --- containerd test host image ------------------------------------------------------------------
# The containerd flavour of the QEMU test hosts (a real kubelet and containerd, for
# test_node_disk_remount_host): its node binaries (kubelet, containerd, crictl: Go builds from the
# module proxy), its pause and app images, then the host image. After the Docker image (both
# debootstrap into the same package cache), in the background and not waited for, like the
# Pushgateway: the host pool runs the same script when it first boots these hosts, which waits on
# the build's lock (or builds, and fails naming the step, itself). Seconds when cached.
if [[ -x "$here/testbed/hosts/build-image.sh" ]] && ! ((${#failed[@]})); then
  nohup bash "$here/testbed/hosts/build-image.sh" --flavour containerd \
    > "$TESTBED_CACHE/containerd-image-build.log" 2>&1 &
fi
if ((${#failed[@]})); then
  say "failed: ${failed[*]}; the messages above say why"
  exit 1
fi

echo "$venv/bin"
