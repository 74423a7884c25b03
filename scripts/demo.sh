#!/usr/bin/env bash
# Sets up .venv, builds fastgan, and shows what its kernels do: what was
# built, then every op against its pure-PyTorch reference and the idioms users
# write today, as one comparison table. Pass `--bench-device cuda` on a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-env.sh
.venv/bin/pytest bench -q -p no:cacheprovider --benchmark-columns=median,min,rounds "$@"
