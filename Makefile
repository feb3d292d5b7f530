# Two commands do all the set-up: `make serve` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint redis

$(STAMP): pyproject.toml constraints.txt
	@python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
		(echo "tunelytics needs Python 3.11 as python3" >&2; exit 1)
	test -x $(BIN)/python || python3 -m venv $(VENV)
	# constraints.txt pins torch==2.13.0 (CPU): pip never resolves another torch.
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/tunelytics serve

redis:
	@redis-cli -p 6379 ping >/dev/null 2>&1 || redis-server --daemonize yes --port 6379 --save ""

lint: $(STAMP)
	$(BIN)/ruff check tunelytics tests benchmarks
	$(BIN)/ruff format --check tunelytics tests benchmarks
	$(BIN)/mypy tunelytics

test: $(STAMP) redis lint
	$(BIN)/pytest
