"""Divergence watch: runs of consecutive non-finite losses, counted on the device.

A training step must not wait for the device (docs/reliability.md), so the watch never reads
a loss on the host: it keeps the current run of non-finite steps and the longest run as
device tensors, and the training loop reads the longest run once per epoch.
"""

from __future__ import annotations

import torch


class NonFiniteWatch:
    """Longest run of consecutive steps whose loss was NaN or infinite.

    Args:
        device: where the losses live.
    """

    def __init__(self, device: torch.device | str):
        self.current = torch.zeros((), dtype=torch.int64, device=device)
        self.longest = torch.zeros((), dtype=torch.int64, device=device)

    def update(self, *losses: torch.Tensor) -> None:
        """Count one step; ``losses`` are scalar tensors (no host sync)."""
        finite = torch.stack([torch.isfinite(loss.detach()).all() for loss in losses]).all()
        self.current = (self.current + 1) * (~finite)
        self.longest = torch.maximum(self.longest, self.current)

    def read(self) -> int:
        """The longest run so far (one device-to-host transfer: call it once an epoch)."""
        return int(self.longest.item())

    def reset(self) -> None:
        """Forget the longest run (after it was read), keeping the current one."""
        self.longest = self.current.clone()
