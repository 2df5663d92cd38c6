# mango_lite developer targets. PRESET=quick|cpu|gpu|paper (default: quick for tests, auto otherwise).
PYTHON ?= python
PRESET ?=
OUT ?= results/$(if $(PRESET),$(PRESET),auto)

.PHONY: lint test test-unit test-notebooks lab bench reproduce notebooks book gpu gpu-rehearsal clean

test: test-unit test-notebooks  ## unit tests + every notebook executed by nbval, in quick mode

lint:  ## ruff (rules in pyproject.toml)
	$(PYTHON) -m ruff check .

test-unit:
	MANGO_LITE_PRESET=quick $(PYTHON) -m pytest -q tests

test-notebooks:
	MANGO_LITE_PRESET=quick $(PYTHON) -m pytest -q --nbval-lax --nbval-sanitize-with notebooks/nbval_sanitize.cfg --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider --ignore=notebooks/student notebooks/

lab:  ## open the notebooks
	jupyter lab notebooks/

bench:  ## performance scripts (print ratios against references measured in the same run)
	$(PYTHON) benchmarks/bench_ica.py
	$(PYTHON) benchmarks/bench_renderer.py

reproduce:  ## the main job: stand-in data (or --data-root), MANGO + baselines on all three tasks
	$(PYTHON) -m mango_lite reproduce $(if $(PRESET),--preset $(PRESET),) --out $(OUT)

gpu:  ## one GPU lease (<= 9 min): flow checks, ICA (fused too) vs fused attention, training steps, the replication study -> results/gpu
	PYTHON=$(PYTHON) bash benchmarks/gpu_lease.sh results/gpu

gpu-rehearsal:  ## the same on the CPU at tiny sizes, before spending a GPU lease on a bug
	REHEARSAL=1 PYTHON=$(PYTHON) bash benchmarks/gpu_lease.sh runs/gpu-rehearsal

notebooks:  ## rebuild the notebooks from notebooks/src and execute them at the cpu preset
	$(PYTHON) notebooks/build.py --execute --preset $(if $(PRESET),$(PRESET),cpu)

book:  ## static site of the committed notebooks and the exercise index (Sphinx + myst-nb, no execution) -> build/book
	$(PYTHON) -m sphinx -b html -c book -W --keep-going -q . build/book
	$(PYTHON) book/check_offline.py build/book
	@printf '<meta http-equiv="refresh" content="0; url=book/index.html">\n' > build/book/index.html
	@echo "book: build/book/index.html"

clean:
	rm -rf .pytest_cache build dist *.egg-info runs
