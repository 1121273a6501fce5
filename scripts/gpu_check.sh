#!/usr/bin/env bash
# The GPU check (docs/reliability.md): gpu-marked tests, a probed EAGC step under
# torch.cuda.set_sync_debug_mode("error") (fp16 + GradScaler, bf16), entangle bench at the
# CUDA defaults with its peak memory, and a benchmark-shaped EAGC training run on a fake CUB
# tree under fp16 and bf16, inside one time budget (--budget-s, default 300 s: five minutes).
# Needs a CUDA device.
set -euo pipefail
cd "$(dirname "$0")/.."
budget=300
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --budget-s) budget="${args[i + 1]:-$budget}" ;;
    --budget-s=*) budget="${args[i]#*=}" ;;
  esac
done
# a minute above the check's own budget: the check starts no part it has no time for, so
# this only stops one that overruns its estimate badly
exec timeout "$((${budget%.*} + 60))" python -m entangle.bench.gpu_check "$@"
