# perception_3dinn: the two commands a fresh machine needs are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
ENV := source scripts/env.sh >/dev/null 2>&1 &&
PYTEST_ARGS ?=
# ROS 2 from PyPI wheels: jazzy (LTS, default) or kilted; a sourced ROS 2 install wins.
ROS_WHEELS ?= jazzy
export ROS_WHEELS

.PHONY: help setup demo test lint bench clean

help:  ## list the targets
	@grep -E '^[a-z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

setup:  ## ROS_WHEELS=jazzy(default)|kilted: .venv-<d> + colcon build into install-<d>; idempotent
	@bash scripts/setup_env.sh

demo: setup  ## run the node on the demo sequence (CPU, default model) and report
	@$(ENV) bash scripts/demo.sh

test: setup  ## ruff + the whole pytest suite (DDS tests on a private ROS_DOMAIN_ID)
	@$(ENV) python -m pytest $(PYTEST_ARGS)

lint: setup  ## ruff only
	@$(ENV) ruff check .

BENCH_OUT ?= out/bench/results

bench: setup  ## quick run of every bench/ script with its defaults; tables in $(BENCH_OUT)
	@$(ENV) for b in bench/bench_*.py; do echo "== $$b"; python "$$b" --out $(BENCH_OUT) || exit 1; done
	@echo "tables written to $(BENCH_OUT) (the committed ones in bench/results name their commands)"

clean:  ## remove build products of every distribution (keeps the .venv-* folders)
	rm -rf build install install-*/ log
