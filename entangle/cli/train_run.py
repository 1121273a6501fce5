"""The steps of `entangle train`: options to a config, presets, torchrun, the run and its summary.

The command (`entangle.cli.train`) holds only typer's option list; this module does the work, in
the order the command always did it: relaunch under torchrun when asked, build and show the
config, refuse unsafe checkpoints, check the run directory, pretrain / reference / train, print.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from entangle.cli.common import console, print_json, stage_progress
from entangle.cli.train_display import Silent, TrainDisplay, summary_lines
from entangle.errors import EntangleValueError

# the command's options that are not TrainConfig fields: they steer the run, not the recipe
RUN_OPTIONS = ("out", "trust_checkpoint", "show_config", "gpus", "quiet")


def run_train(ctx: typer.Context, options: dict) -> None:
    """``entangle train`` with its options by name (``out``, the run options, the config's)."""
    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.nn import distributed

    if options["gpus"] > 1 and not options["show_config"] and distributed.launched_world() == 1:
        raise typer.Exit(relaunch(options["gpus"]))
    config = build_config({k: v for k, v in options.items() if k not in RUN_OPTIONS})
    source = {}
    if config.preset is not None:
        config, source = apply_preset(ctx, config, config.preset)
    if options["show_config"]:
        show_config(config, source)
        return
    out, trust = options["out"], options["trust_checkpoint"]
    config = check_before_training(config, out, trust)
    main = distributed.is_main_process()  # asked now: the group is gone after the run
    summary = train_run(config, out, trust_checkpoint=trust, quiet=options["quiet"])
    if not main:
        return
    for line in summary_lines(summary, out, config.data):  # a path is never broken
        console.print(line, highlight=False, soft_wrap=True)


def build_config(fields: dict):
    """The TrainConfig of the command's config options (``epochs`` unset: ViT 200, else 12)."""
    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.gcd.train import TrainConfig

    if fields["epochs"] is None:
        fields = fields | {"epochs": 200 if fields["model"].startswith("vit-") else 12}
    return TrainConfig(**fields)


def show_config(config, source: dict) -> None:
    """``--show-config``: the resolved config (and the preset's script, if any) as JSON."""
    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.gcd.config import run_config

    shown = run_config(config) | ({"preset_script": source} if config.preset else {})
    print_json(shown, "--show-config")


def check_before_training(config, out: Path, trust_checkpoint: bool):
    """``config`` on this rank's device once the checks that must not wait have passed.

    A bad device, an unsafe checkpoint, a run directory or settings mismatch fails now, not
    after minutes of pretraining; under torchrun this process joins the group here.
    """
    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.gcd.train import check_run_dir, resolve_device

    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.nn import distributed

    device_used = resolve_device(config.device)
    if distributed.launched_world() > 1:
        config = join_ranks(config, device_used)
    if not trust_checkpoint:
        # lazy: start-up time: the command's library loads when it runs (--help stays fast)
        from entangle.checkpoints.safe import refuse_code

        for given in (config.pretrained, config.reference):
            if given:
                refuse_code(given)
    if distributed.is_main_process():
        check_run_dir(config, out)
    return config


def train_run(config, out: Path, *, trust_checkpoint: bool, quiet: bool) -> dict:
    """Prepare (pretrain), make the reference, train into ``out``; the run's DONE summary."""
    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.gcd.train import ensure_reference, prepare, train

    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.nn import distributed

    main = distributed.is_main_process()
    try:
        with stage_progress(quiet) if main else Silent() as progress:
            setup = prepare(
                config,
                trust_checkpoint=trust_checkpoint,
                progress=lambda stage, e, loss: progress(
                    stage, e + 1, config.pretrain_epochs, f"loss {loss:.3f}"
                ),
            )
            if main and config.needs_reference():  # shown here; train() reuses it
                ensure_reference(
                    config,
                    setup,
                    progress=lambda stage, e, loss: progress(
                        stage, e + 1, config.reference_epochs, f"loss {loss:.3f}"
                    ),
                )
            view = TrainDisplay(
                progress,
                f"train {config.variant()}",
                config.epochs,
                images_per_step=config.batch_size * distributed.world_size(),
            )
            summary = train(config, out, setup, on_step=view.step, on_epoch=view.epoch)
        # every rank past its last collective before any tears its sockets down: gloo aborts
        # (SIGABRT) a rank whose peer closes a connection under it (no graceful shutdown)
        distributed.barrier()
        return summary
    finally:
        if distributed.world_size() > 1:
            import torch

            torch.distributed.destroy_process_group()


def apply_preset(ctx: typer.Context, config, preset: str):
    """``config`` with the preset's values where the user left the flag at its default."""
    import dataclasses

    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.gcd.presets import preset_values

    values = preset_values(preset, config.data)
    source = {"preset_source": values.pop("preset_source")}
    # a field without a flag (trainable_blocks, reference_batch_size) has no source: preset wins
    keep = {
        k: v
        for k, v in values.items()
        if getattr(ctx.get_parameter_source(k), "name", "DEFAULT") == "DEFAULT"
    }
    return dataclasses.replace(config, **keep), source


def relaunch(gpus: int) -> int:
    """Run this very command under torchrun with ``gpus`` processes; its exit status."""
    import subprocess
    import sys

    args = without_gpus(sys.argv[1:])
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc_per_node={gpus}", "-m", "entangle", *args]
    console.print(
        f"launching {gpus} processes: torchrun --nproc_per_node {gpus} -m entangle "
        f"{escape(' '.join(args))}",
        highlight=False,
    )
    return subprocess.call(command)


def without_gpus(argv: list[str]) -> list[str]:
    """``argv`` minus ``--gpus N`` / ``--gpus=N`` (the launched processes must not relaunch)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--gpus":
            skip = True
        elif not arg.startswith("--gpus="):
            out.append(arg)
    return out


def join_ranks(config, device):
    """Join torchrun's process group; on CUDA this rank trains on ``cuda:LOCAL_RANK``."""
    import dataclasses

    import torch

    # lazy: start-up time: the command's library loads when it runs (--help stays fast)
    from entangle.nn import distributed

    cuda = device.type == "cuda"
    if cuda and distributed.local_rank() >= torch.cuda.device_count():
        raise EntangleValueError(
            f"torchrun started {distributed.launched_world()} processes but this machine has "
            f"{torch.cuda.device_count()} CUDA device(s); lower --nproc_per_node / --gpus"
        )
    distributed.init_from_env(use_cuda=cuda)
    if cuda:
        config = dataclasses.replace(config, device=f"cuda:{distributed.local_rank()}")
    return config
