#!/usr/bin/env bash
# The whole test suite, as README and CI run it: bootstrap (cached), collection build, then one
# pytest run of unit and integration tests on the real local control plane (and on QEMU test hosts
# where the host tests are present), with the static checks (ansible-lint, ansible-test sanity) and
# the version matrix in its background. Exits non-zero on any failure.
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
summary() {  # [STATUS]: the run's exit status (default: the last command's)
  local rc=${1:-$?}
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

stage "ansible-galaxy collection build"
out=$(mktemp -d)
ansible-galaxy collection build --force --output-path "$out" . >&2
ls "$out"/kubeops-node_maintenance-*.tar.gz >&2
rm -rf "$out"

# The static checks (ansible-lint --profile production, then ansible-test sanity) run in the
# background of pytest, at the cluster workers' CPU priority (below): two minutes of CPU off the
# critical path, the QEMU host chain, which starts booting its hosts at once. Their output and
# status come after pytest's; either failing fails the run. KUBEOPS_STATIC=first runs them before
# pytest instead (a failure then stops the run at once).
static_dir=$(mktemp -d -t kubeops-static.XXXXXX)
static_pid=""
run_static() {  # each check's output into $static_dir/NAME.log, "rc seconds" into NAME.rc
  local name=$1 t rc=0
  shift
  t=$(date +%s)
  "$@" > "$static_dir/$name.log" 2>&1 || rc=$?
  echo "$rc $(( $(date +%s) - t ))" > "$static_dir/$name.rc"
  return "$rc"
}
static_checks() {  # [NICE]: both run, whatever the first gives
  run_static lint nice -n "${1:-0}" bash tests/lint.sh || true
  run_static sanity nice -n "${1:-0}" bash tests/sanity.sh || true
}
# shellcheck disable=SC2317  # run by the EXIT trap and after pytest
static_report() {  # the checks' durations into the summary, their output (in full on a failure); 1 on a failure
  local name label rc secs failed=0
  for name in lint sanity; do
    label="ansible-lint --profile production" && [[ $name == sanity ]] && label="ansible-test sanity"
    if [[ ! -s $static_dir/$name.rc ]]; then
      stages+=("$(printf '%-45s %s' "$label" "NOT RUN")")
      failed=1
      continue
    fi
    read -r rc secs < "$static_dir/$name.rc"
    stages+=("$(printf '%-45s %5ds%s' "$label" "$secs" "$([[ $rc == 0 ]] || echo "  FAILED (rc $rc)")")")
    if [[ $rc == 0 ]]; then
      say "$label: passed in ${secs}s"
      tail -n 3 "$static_dir/$name.log" >&2
    else
      say "$label FAILED (rc $rc) in ${secs}s:"
      cat "$static_dir/$name.log" >&2
      failed=1
    fi
  done
  return "$failed"
}

# The version matrix (noxfile.py, tests/matrix/nox.sh): the other ansible-core lines' unit tests and
# module-level integration subset, each beside its paired Kubernetes minor, one session after the
# other in the background of pytest, on control planes of their own (the host chain, not the
# cluster, is pytest's critical path). KUBEOPS_MATRIX=0 leaves it out (said in the summary); its
# result is judged by tests/matrix/report.py after pytest: every session nox selected must succeed.
# pytest's cluster workers (and the control planes they start) at a lower CPU priority than the
# host chain's worker (tests/conftest.py): the QEMU guests are the critical path and burn more CPU
# for the same work when they wait for a core. Default 5; 0 keeps them all equal.
export KUBEOPS_CLUSTER_NICE="${KUBEOPS_CLUSTER_NICE:-5}"
matrix_pid="" matrix_dir="" matrix_start=0
if [[ ${KUBEOPS_MATRIX:-1} != 0 ]]; then
  matrix_dir=$(mktemp -d -t kubeops-matrix.XXXXXX)
  matrix_start=$(date +%s)
  say "version matrix started in the background (log: $matrix_dir/nox.log)"
  # KUBEOPS_MATRIX_NICE=N: the matrix's CPU priority; default that of pytest's cluster workers.
  # KUBEOPS_MATRIX_START=free-core: the matrix waits until pytest's first worker is out of work
  # (tests/conftest.py touches KUBEOPS_MATRIX_GO) or pytest ends; default "now", beside all of pytest.
  case ${KUBEOPS_MATRIX_START:-now} in
    now) ;;
    free-core) export KUBEOPS_MATRIX_GO="$matrix_dir/go" ;;
    *) echo "KUBEOPS_MATRIX_START: now or free-core, not ${KUBEOPS_MATRIX_START}" >&2; exit 2 ;;
  esac
  setsid nice -n "${KUBEOPS_MATRIX_NICE:-$KUBEOPS_CLUSTER_NICE}" bash tests/matrix/ci.sh "$matrix_dir" &  # own process group: stop_matrix
  matrix_pid=$!
else
  stages+=("$(printf '%-45s %s' "  version matrix" "OFF (KUBEOPS_MATRIX=0)")")
fi
# shellcheck disable=SC2317  # run by the EXIT trap
stop_matrix() {  # a run that ends before the matrix is judged: stop it (pytest's teardown stops its
  # control planes on SIGINT) and say so; the run's status is already a failure
  if [[ -n $matrix_pid ]] && kill -0 "$matrix_pid" 2>/dev/null; then
    kill -INT -- "-$matrix_pid" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$matrix_pid" 2>/dev/null || break; sleep 1; done
    kill -TERM -- "-$matrix_pid" 2>/dev/null || true
    say "version matrix stopped unfinished (the run ended early): its result is unknown; log: $matrix_dir/nox.log"
  fi
}
# shellcheck disable=SC2317  # run by the EXIT trap
stop_static() {  # a run that ends before the static checks did: stop them (their own process group)
  if [[ -n $static_pid ]] && kill -0 "$static_pid" 2>/dev/null; then
    kill -TERM -- "-$static_pid" 2>/dev/null || true
    say "static checks stopped unfinished (the run ended early)"
  fi
}
# shellcheck disable=SC2317  # run by the EXIT trap
on_exit() {
  local rc=$?
  stop_static
  stop_matrix
  restore_autogroup
  summary "$rc"
}
trap on_exit EXIT
# Niceness only ranks processes of one session while the kernel groups the CPU by session
# (kernel.sched_autogroup_enabled=1, the default on most kernels): every QEMU guest (-daemonize),
# every control plane component, the matrix and each of ansible's workers run in a session of their
# own, and each session gets an equal share whatever its niceness (measured here: a nice-5 burner in
# its own session got as much CPU as a nice-0 one; with the grouping off, a quarter). So for the run,
# where this user may (root on a CI machine), the grouping is switched off and switched back on at
# exit; KUBEOPS_AUTOGROUP=keep leaves it alone.
autogroup_sysctl=/proc/sys/kernel/sched_autogroup_enabled
autogroup_restore=""
if [[ ${KUBEOPS_AUTOGROUP:-off} == off && $KUBEOPS_CLUSTER_NICE != 0 && -r $autogroup_sysctl \
      && $(cat "$autogroup_sysctl") == 1 ]]; then
  if { echo 0 > "$autogroup_sysctl"; } 2>/dev/null; then
    autogroup_restore=1
    say "kernel.sched_autogroup_enabled=0 for this run (restored at exit): the niceness of the cluster workers counts"
  else
    say "kernel.sched_autogroup_enabled=1 and not writable here: CPU is shared by session, the cluster workers' niceness counts only within theirs"
  fi
fi
# shellcheck disable=SC2317  # run by the EXIT trap
restore_autogroup() {
  if [[ -n $autogroup_restore ]]; then
    echo 1 > "$autogroup_sysctl" 2>/dev/null || true
    autogroup_restore=""
  fi
}

if [[ ${KUBEOPS_STATIC:-background} == first ]]; then
  stage "static checks (ansible-lint, ansible-test sanity)"
  static_checks
  stage ""
  static_report || exit 1
else
  say "static checks (ansible-lint, ansible-test sanity) started in the background of pytest"
  set -m  # the checks in a process group of their own, for stop_static
  static_checks "$KUBEOPS_CLUSTER_NICE" &
  static_pid=$!
  set +m
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
# The host scenarios' step times (tests/integration/hostsupport.py record_step_times), printed
# after pytest: pytest drops a passed test's captured output, and these say where the host chain's
# minutes went.
step_times_ours=""
if [[ -z ${KUBEOPS_STEP_TIMES:-} ]]; then
  KUBEOPS_STEP_TIMES=$(mktemp -t kubeops-step-times.XXXXXX) step_times_ours=1
fi
export KUBEOPS_STEP_TIMES
# -p no:cacheprovider: CI clones are read-only-ish and the cache is noise there.
pytest_rc=0
python -m pytest -p no:cacheprovider "${parallel[@]}" --durations=25 "$@" || pytest_rc=$?
if [[ -s $KUBEOPS_STEP_TIMES ]]; then
  printf '\n[test] host scenario step times (s)\n' >&2
  sed 's/^/  /' "$KUBEOPS_STEP_TIMES" >&2
fi
[[ -z $step_times_ours ]] || rm -f "$KUBEOPS_STEP_TIMES"
[[ -z ${KUBEOPS_MATRIX_GO:-} ]] || touch "$KUBEOPS_MATRIX_GO"  # KUBEOPS_MATRIX_START=free-core

if [[ -n $static_pid ]]; then
  stage "static checks (what is left of them after pytest)"
  wait "$static_pid" || true
  static_pid=""
  stage ""
  static_report || { [[ $pytest_rc != 0 ]] || pytest_rc=1; }
fi

if [[ -n $matrix_pid ]]; then
  stage "version matrix (nox; what is left of it after pytest)"
  wait "$matrix_pid" || true
  matrix_pid=""
  matrix_rc=0
  python3 tests/matrix/report.py "$matrix_dir" || matrix_rc=$?
  stages+=("$(printf '%-45s %5ds' "  (version matrix in all, from its start)" $(( $(date +%s) - matrix_start )))")
  if [[ $matrix_rc != 0 ]]; then
    say "version matrix FAILED: its whole log is $matrix_dir/nox.log"
    stages+=("$(printf '%-45s %s' "  version matrix" "FAILED")")
    [[ $pytest_rc != 0 ]] || pytest_rc=$matrix_rc
  else
    rm -rf "$matrix_dir"
  fi
fi
exit "$pytest_rc"
