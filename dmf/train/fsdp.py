"""trainer=fsdp: FSDP2 (`fully_shard`) under Lightning's ModelParallelStrategy, in the one form that the DMF step's
forward-mode JVP survives (measured on torch 2.14, docs/training.md "FSDP and the JVP step").

The JVP must not run an FSDP all-gather: each block keeps its gathered parameters from the step's first forward
until its backward (`reshard_after_forward=False`) and the step gathers them up front (`unshard_for_step`). What
stays sharded across ranks is what AdamW and the gradients hold; each rank holds the full parameters during the
step. The EMA copy is not sharded (full on every rank, updated from the gathered weights), so sampling callbacks
and checkpoints see it as under DDP.
"""
import torch
from lightning.pytorch.strategies import ModelParallelStrategy, StrategyRegistry
from torch.distributed.fsdp import FSDPModule, fully_shard

STRATEGY_NAME = "dmf_fsdp"


class FSDPStrategy(ModelParallelStrategy):
    """Pure data parallelism over all ranks (no tensor parallelism), checkpoints as one full file on rank 0:
    the same `net.*` / `ema_net.*` key layout as DDP, loadable by mode=eval and by `ckpt=`."""

    def __init__(self, **kwargs):
        super().__init__(save_distributed_checkpoint=False, **kwargs)

    def setup_environment(self) -> None:
        self._data_parallel_size, self._tensor_parallel_size = self.num_nodes * self.num_processes, 1
        super().setup_environment()


StrategyRegistry.register(STRATEGY_NAME, FSDPStrategy, description="FSDP2 for the JVP step (dmf/train/fsdp.py)",
                          override=True)


def shard(net: torch.nn.Module, mesh) -> None:
    """Each transformer block is one all-gather unit, the rest (embedders, final layer) the root's."""
    if isinstance(net, FSDPModule):
        return  # configure_model runs again for validate/test after fit
    for block in getattr(net, "blocks", []):
        fully_shard(block, mesh=mesh, reshard_after_forward=False)
    fully_shard(net, mesh=mesh, reshard_after_forward=False)


def unshard_for_step(net: torch.nn.Module) -> None:
    """Gather every unit before the step: an all-gather inside torch.func.jvp corrupts the step (see module doc)."""
    if isinstance(net, FSDPModule):
        for m in net.modules():
            if isinstance(m, FSDPModule):
                m.unshard()
