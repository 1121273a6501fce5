"""Run cells as Ray tasks on an existing (or a freshly started local) Ray cluster.

Ray is an optional extra (``pip install "entangle-gcd[ray]"``) and is imported only here.
Every node must have entangle installed and see the grid folder at the same path (a shared
file system): the tasks write their run directories and read the shared starting weights
there, exactly as local workers do.
"""

from __future__ import annotations

from collections.abc import Callable

from entangle.ablation.cell import record_failure, run_cell
from entangle.errors import EntangleError


def _import_ray():
    try:
        import ray
    except ModuleNotFoundError as exc:
        if exc.name != "ray":
            raise
        raise EntangleError(
            '--launcher ray needs Ray, which is not installed: pip install "entangle-gcd[ray]"'
        ) from None
    return ray


def run_ray(
    jobs: list[dict],
    *,
    address: str | None,
    gpus_per_cell: float,
    cpus_per_cell: float,
    on_done: Callable[[dict], None],
) -> None:
    """Submit one Ray task per job and report each result as it arrives.

    Args:
        jobs: :func:`entangle.ablation.cell.run_cell` jobs.
        address: cluster address for ``ray.init`` (``None``: ``RAY_ADDRESS`` or the cluster
            started on this machine by ``ray start``; ``"local"``: start a new local one).
            When Ray is already initialised in this process, that connection is used.
        gpus_per_cell: GPUs each task asks for; with > 0 the task trains on ``cuda`` (Ray
            sets the visible devices of the task).
        cpus_per_cell: CPUs each task asks for.
        on_done: called with each cell's result dict.
    """
    ray = _import_ray()
    connected_here = not ray.is_initialized()
    if connected_here:
        ray.init(address=address, log_to_driver=False)
    try:
        task = ray.remote(run_cell).options(num_cpus=cpus_per_cell, num_gpus=gpus_per_cell)
        device = "cuda" if gpus_per_cell > 0 else None
        refs = {task.remote(job | {"device": device}): job for job in jobs}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                job = refs[ref]
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the task's process died or was lost
                    error = f"Ray task failed: {type(exc).__name__}: {exc}"
                    record_failure(job["run_dir"], error)
                    result = {"name": job["name"], "status": "failed", "error": error}
                on_done(result)
    finally:
        if connected_here:
            ray.shutdown()
