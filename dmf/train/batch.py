"""The global batch is what a run states; per-device batch and gradient accumulation follow from the world
size known at launch (devices x nodes), so a run on 8 or 16 GPUs trains on the same global batch."""
from dataclasses import dataclass

import torch

from dmf.core.errors import ConfigError
from dmf.core.ranks import torchrun_layout


class BatchError(ConfigError):
    pass


@dataclass(frozen=True)
class BatchLayout:
    global_batch: int
    world_size: int
    per_device: int  # samples per device per micro-batch (the DataLoader's batch_size)
    accumulate: int  # micro-batches per optimizer step

    def describe(self) -> str:
        return (f"global batch {self.global_batch} = {self.world_size} device(s) x {self.per_device} per device"
                f" x {self.accumulate} accumulation step(s)")


def batch_layout(global_batch: int, world_size: int, max_per_device: int | None = None,
                 accumulate: int | str = "auto") -> BatchLayout:
    """Split `global_batch` over `world_size` devices.

    accumulate=auto: one micro-batch per step unless that exceeds max_per_device, then the fewest
    accumulation steps that fit. An explicit integer is taken as given. Anything that does not divide
    exactly is an error naming the numbers (a silently smaller batch changes the experiment).
    """
    for key, value in (("data.global_batch_size", global_batch), ("world size", world_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BatchError(f"{key}={value!r} must be a positive integer")
    if global_batch % world_size:
        raise BatchError(f"data.global_batch_size={global_batch} does not divide over {world_size} devices "
                         f"(trainer.devices x trainer.num_nodes); choose a multiple of {world_size} or another "
                         f"device count")
    per_rank = global_batch // world_size

    def fewest_steps(start: int) -> int:  # accumulation steps from `start` that divide per_rank and fit the cap
        return next(k for k in range(start, per_rank + 1) if per_rank % k == 0 and per_rank // k <= max_per_device)

    if accumulate == "auto":
        if max_per_device is None or per_rank <= max_per_device:
            return BatchLayout(global_batch, world_size, per_rank, 1)
        accumulate = fewest_steps(2)
    if isinstance(accumulate, bool) or not isinstance(accumulate, int) or accumulate < 1:
        raise BatchError(f"trainer.accumulate_grad_batches={accumulate!r} must be auto or a positive integer")
    if per_rank % accumulate:
        raise BatchError(f"data.global_batch_size={global_batch} over {world_size} devices is {per_rank} per device, "
                         f"which trainer.accumulate_grad_batches={accumulate} does not divide")
    if max_per_device is not None and per_rank // accumulate > max_per_device:
        raise BatchError(f"trainer.accumulate_grad_batches={accumulate} gives {per_rank // accumulate} per device, "
                         f"above data.max_batch_per_device={max_per_device} (the memory cap): leave "
                         f"trainer.accumulate_grad_batches=auto, set it to {fewest_steps(accumulate)} or more, or lift "
                         f"the cap (data.max_batch_per_device=null)")
    return BatchLayout(global_batch, world_size, per_rank // accumulate, accumulate)


def resolve_devices(devices, accelerator: str = "auto") -> int:
    """How many processes Lightning will start on this node for trainer.devices / trainer.accelerator. Under
    torchrun, which starts them itself, `auto` is its --nproc_per_node (on a CPU Lightning's `auto` would be 1:
    every rank a run of its own)."""
    if (torchrun := torchrun_layout()) and devices in ("auto", -1, "-1"):
        return torchrun[0]
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    uses_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and gpus > 0)
    if devices in ("auto", -1, "-1"):
        return gpus if uses_gpu else 1
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str) and "," in devices:
        return len([d for d in devices.split(",") if d.strip()])
    try:
        count = int(devices)
    except (TypeError, ValueError):
        raise BatchError(f"trainer.devices={devices!r} must be a count, a list of device ids, or auto") from None
    if count < 1:
        raise BatchError(f"trainer.devices={devices} must be at least 1 (or auto: every GPU, else one CPU process)")
    return count
