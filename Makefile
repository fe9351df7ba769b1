# The two commands of the README's Quick start.
.PHONY: demo test lint unit

# The main job: a multi-stage build of the example app, end to end.
demo:
	bash scripts/setup.sh demo
	bash scripts/demo.sh

# The whole test suite: lint, strict typing, layering contract, unit + conformance + end-to-end tests.
test:
	bash scripts/setup.sh test
	$(MAKE) --no-print-directory lint
	.venv/bin/python -m pytest -q

lint:
	.venv/bin/ruff check src tests bench
	.venv/bin/ruff format --check src tests bench
	.venv/bin/mypy
	.venv/bin/lint-imports

unit:
	.venv/bin/python -m pytest -q tests/unit tests/conformance
