#!/usr/bin/env bash
# Mutation testing of the science core, one module at a time (by hand, never in CI; slow):
#   benchmarks/mutation.sh geometry metrics   # run those modules, then print their scores
#   benchmarks/mutation.sh                    # every module
#   benchmarks/mutation.sh --score            # scores from the cached results
# See benchmarks/mutation.py and docs/mutation.md.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-$(command -v python3)}
[ -x .venv/bin/python ] && py=.venv/bin/python
exec "$py" benchmarks/mutation.py "$@"
