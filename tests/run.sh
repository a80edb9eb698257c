#!/usr/bin/env bash
# The whole test suite, as README and CI run it: bootstrap (cached), static checks, collection
# build, then one pytest run of unit and integration tests on the real local control plane
# (and on QEMU test hosts where the host tests are present). Exits non-zero on any failure.
#
# Every stage's duration is printed when it ends and again, as a table, when the run ends (also
# on failure), with pytest's 25 slowest tests before it: a CI log says where the minutes went.
#
# pytest runs in parallel workers (pytest-xdist, tests/conftest.py's scheduler): the QEMU host tests
# on a worker of their own that boots its hosts once and restores them from a snapshot for each
# module; the other workers take the rest module by module; every worker has
# a control plane of its own. KUBEOPS_TEST_WORKERS sets their number (default 3: the host chain and
# two for the rest; 0 runs everything in this process).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
say() { printf '\n[test %s] == %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
t0=$(date +%s)
stages=()
stage_name="" stage_start=0
stage() {  # stage NAME: ends the stage before (printing its duration) and starts NAME
  local now; now=$(date +%s)
  if [[ -n $stage_name ]]; then
    stages+=("$(printf '%-45s %5ds' "$stage_name" $((now - stage_start)))")
    say "$stage_name: $((now - stage_start))s"
  fi
  stage_name=$1 stage_start=$now
  [[ -n $stage_name ]] && say "$stage_name"
  return 0
}
# shellcheck disable=SC2317  # run by the EXIT trap
summary() {
  local rc=$?
  stage ""
  {
    printf '\n[test] stage durations (rc %d)\n' "$rc"
    printf '  %s\n' "${stages[@]}"
    printf '  %-45s %5ds\n' "total" $(( $(date +%s) - t0 ))
  } >&2
}
trap summary EXIT

stage "bootstrap (packages, venv, binaries, image)"
venv_bin=$(bash tests/bootstrap.sh | tail -n 1)
export PATH="$venv_bin:$PATH"

stage "ansible-lint --profile production"
bash tests/lint.sh

stage "ansible-test sanity"
bash tests/sanity.sh

stage "ansible-galaxy collection build"
out=$(mktemp -d)
ansible-galaxy collection build --force --output-path "$out" . >&2
ls "$out"/kubeops-node_maintenance-*.tar.gz >&2
rm -rf "$out"

# The version matrix (noxfile.py, tests/matrix/nox.sh): the other ansible-core lines' unit tests and
# module-level integration subset, each beside its paired Kubernetes minor, one session after the
# other in the background of pytest, on control planes of their own (the host chain, not the
# cluster, is pytest's critical path). KUBEOPS_MATRIX=0 leaves it out; its log is printed at the end.
matrix_pid="" matrix_log="" matrix_start=0
if [[ ${KUBEOPS_MATRIX:-1} != 0 ]]; then
  matrix_log=$(mktemp -t kubeops-matrix.XXXXXX.log)
  matrix_start=$(date +%s)
  say "version matrix started in the background (log: $matrix_log)"
  bash tests/matrix/nox.sh > "$matrix_log" 2>&1 &
  matrix_pid=$!
fi

stage "pytest: unit and integration tests"
# The parser fuzzing runs 2,000 cases per property here to keep the whole suite inside CI's 90
# minutes; `make faults` (the fault suite alone) runs the full 10,000. Override by setting it.
export KUBEOPS_FUZZ_EXAMPLES="${KUBEOPS_FUZZ_EXAMPLES:-2000}"
workers=${KUBEOPS_TEST_WORKERS:-3}
parallel=()
if [[ $workers != 0 ]]; then
  parallel=(-n "$workers" --dist loadscope)
fi
# -p no:cacheprovider: CI clones are read-only-ish and the cache is noise there.
pytest_rc=0
python -m pytest -p no:cacheprovider "${parallel[@]}" --durations=25 "$@" || pytest_rc=$?

if [[ -n $matrix_pid ]]; then
  stage "version matrix (nox; what is left of it after pytest)"
  matrix_rc=0
  wait "$matrix_pid" || matrix_rc=$?
  grep -E '^nox > (Running session|Session|\*)|^ansible-core |passed|failed|error' "$matrix_log" >&2 || true
  stages+=("$(printf '%-45s %5ds' "  (version matrix in all, from its start)" $(( $(date +%s) - matrix_start )))")
  if [[ $matrix_rc != 0 ]]; then
    say "version matrix FAILED (rc $matrix_rc): the whole log follows"
    cat "$matrix_log" >&2
    [[ $pytest_rc != 0 ]] || pytest_rc=$matrix_rc
  fi
  rm -f "$matrix_log"
fi
exit "$pytest_rc"
