# Thin wrappers; the scripts hold the logic.
.PHONY: matrix bootstrap test unit integration faults lint sanity build cluster-up cluster-down cluster-status demo bench hosts-image test-hosts molecule

VENV_BIN = $(HOME)/.cache/kubeops-node-maintenance/venv/bin
PY = $(VENV_BIN)/python

bootstrap:         ## install everything the tests need (cached)
	bash tests/bootstrap.sh

test:              ## the whole suite, as CI runs it
	bash tests/run.sh

unit:              ## unit tests only (no cluster)
	$(PY) -m pytest tests/unit

integration:       ## integration tests on the local control plane, without the QEMU host tests
	$(PY) -m pytest -m "integration and not hosts" tests/integration

matrix:            ## the version matrix (noxfile.py): ansible-core 2.16-2.18 beside Kubernetes 1.34-1.36 as CI runs it; MATRIX_ARGS="-s core-2.17 -- subset k8s=all" for more
	bash tests/bootstrap.sh >/dev/null
	bash tests/matrix/nox.sh $(MATRIX_ARGS)

faults:            ## the fault and abuse suite alone (pytest marker faults): API server outages, races, kills, fuzzing, bad input
	KUBEOPS_FUZZ_EXAMPLES=10000 $(PY) -m pytest -m faults tests/unit tests/integration

lint:
	PATH=$(VENV_BIN):$$PATH bash tests/lint.sh

sanity:
	PATH=$(VENV_BIN):$$PATH bash tests/sanity.sh

build:
	$(VENV_BIN)/ansible-galaxy collection build --force --output-path build/ .

cluster-up:        ## start the local control plane; prints the kubeconfig path
	bash tests/bootstrap.sh >/dev/null
	python3 tests/testbed/cluster.py up

cluster-down:
	python3 tests/testbed/cluster.py down

cluster-status:
	python3 tests/testbed/cluster.py status

demo:              ## the demo rollout on the built-in local cluster
	bash tests/bootstrap.sh >/dev/null
	$(PY) tests/testbed/demo.py $(DEMO_ARGS)

hosts-image:       ## build (or reuse) the QEMU test host image
	bash tests/testbed/hosts/build-image.sh

test-hosts:        ## only the tests on QEMU test hosts (minutes per boot under emulation)
	$(PY) -m pytest -m hosts tests/integration

molecule:          ## the molecule scenario on two test hosts
	$(PY) -c "from tests.conftest import ensure_collection_tree; ensure_collection_tree()"
	PATH=$(VENV_BIN):$$PATH molecule test

bench:             ## benchmarks side by side with kubectl drain and kubernetes.core.k8s_drain
	$(PY) benchmarks/bench_drain.py
	$(PY) benchmarks/bench_preflight.py
	$(PY) benchmarks/bench_rollout_overhead.py
