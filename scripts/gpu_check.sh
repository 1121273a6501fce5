#!/usr/bin/env bash
# The GPU check (docs/reliability.md): gpu-marked tests, a probed EAGC step under
# torch.cuda.set_sync_debug_mode("error") (fp16 + GradScaler, bf16), and entangle bench at
# the CUDA defaults with its peak memory, and a benchmark-shaped EAGC training run on a fake
# CUB tree under fp16 and bf16. Up to 10 minutes; needs a CUDA device.
set -euo pipefail
cd "$(dirname "$0")/.."
exec timeout 600 python -m entangle.bench.gpu_check "$@"
