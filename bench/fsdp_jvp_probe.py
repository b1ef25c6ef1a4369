"""Which FSDP wrapping lets the DMF step's forward-mode JVP run, and does its gradient equal one process's?

Each combination of wrapping x JVP method runs in its own 2-rank job (gloo on CPU, tiny digits DMFT, the real
DMFLoss with model guidance and label drops); a job that hangs is stopped after --timeout seconds. Each rank
takes its own batch and draws; rank 0 compares the gathered gradient with one process on the concatenated batch
(what DDP gives). The results are recorded in docs/training.md ("FSDP and the JVP step").

    PYTHONPATH=. OMP_NUM_THREADS=1 python bench/fsdp_jvp_probe.py [--out bench/results/fsdp_jvp_cpu.md]
"""
import argparse
import copy
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.autograd import forward_ad

WRAPS = {
    "fsdp2": "fully_shard per block + root, reshard_after_forward=True (default)",
    "fsdp2-gathered": "fully_shard, reshard_after_forward=False, all units unsharded before the step (trainer=fsdp)",
    "fsdp1": "FullyShardedDataParallel FULL_SHARD, per-block auto-wrap, use_orig_params (Lightning strategy=fsdp)",
    "fsdp1-grad-op": "FullyShardedDataParallel SHARD_GRAD_OP (no reshard after forward), per-block auto-wrap",
}
# double-backward differentiates the attention backward: CPU flash attention has no derivative for it, math has
JVPS = ("torch.func.jvp", "forward_ad", "double-backward", "double-backward, attention=math")
OVERRIDES = ["experiment=digits_dmf", "model.depth=2", "model.hidden_size=32", "model.num_heads=2",
             "model.dmf_depth=1", "guidance.omega=0.6", "objective.cfg_prob=0.3"]
PER_RANK = 4
_FUNC_JVP = torch.func.jvp


def forward_ad_jvp(f, primals, tangents):
    with forward_ad.dual_level():
        outs = f(*[forward_ad.make_dual(p, t) for p, t in zip(primals, tangents)])
        unpacked = [forward_ad.unpack_dual(o) for o in outs]
        return tuple(u.primal for u in unpacked), tuple(u.tangent for u in unpacked)


def double_backward_jvp(f, primals, tangents):
    return torch.autograd.functional.jvp(f, tuple(p.detach() for p in primals), tangents, create_graph=True)


JVP_FNS = {"torch.func.jvp": _FUNC_JVP, "forward_ad": forward_ad_jvp, "double-backward": double_backward_jvp,
           "double-backward, attention=math": double_backward_jvp}


def rank_batch(objective, rank: int, shape):
    g = torch.Generator().manual_seed(100 + rank)
    x = torch.randn(PER_RANK, *shape, generator=g)
    y = torch.randint(0, 10, (PER_RANK,), generator=g)
    return x, y, objective.draw(PER_RANK, x, g)


def wrap(net, how: str, world: int):
    if how.startswith("fsdp2"):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        from dmf.train.fsdp import shard
        mesh = init_device_mesh("cpu", (world,))
        if how == "fsdp2-gathered":
            shard(net, mesh)
        else:
            for block in net.blocks:
                fully_shard(block, mesh=mesh)
            fully_shard(net, mesh=mesh)
        return net
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp import ShardingStrategy
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    from dmf.models.layers import DiTBlock
    strategy = ShardingStrategy.SHARD_GRAD_OP if how == "fsdp1-grad-op" else ShardingStrategy.FULL_SHARD
    wrapped = FSDP(net, device_id=torch.device("cpu"), use_orig_params=True, sharding_strategy=strategy,
                   auto_wrap_policy=ModuleWrapPolicy({DiTBlock}))
    wrapped.num_classes = net.num_classes
    return wrapped


def full_grads(net, how: str) -> dict:
    if how.startswith("fsdp2"):
        return {n: p.grad.full_tensor() for n, p in net.named_parameters()}
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    with FSDP.summon_full_params(net, with_grads=True):
        return {n.replace("_fsdp_wrapped_module.", ""): p.grad.clone() for n, p in net.named_parameters()}


def one_rank(rank: int, world: int, how: str, jvp: str, port: str):
    from hydra.utils import instantiate

    from dmf.build import build_objective
    from dmf.objectives.draws import concat
    from dmf.train.fsdp import unshard_for_step
    from tests.helpers import compose_config

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        cfg = compose_config(OVERRIDES + (["attention=math"] if jvp.endswith("attention=math") else []))
        torch.manual_seed(0)
        net = instantiate(cfg.model)
        reference, objective = copy.deepcopy(net), build_objective(cfg)
        shape = (net.in_channels, net.input_size, net.input_size)
        net = wrap(net, how, world)
        torch.func.jvp = JVP_FNS[jvp]  # DMFLoss calls torch.func.jvp
        x, y, draws = rank_batch(objective, rank, shape)
        if how == "fsdp2-gathered":
            unshard_for_step(net)
        objective(net, x, y, draws=draws)[0].backward()
        grads = full_grads(net, how)
        if rank == 0:
            torch.func.jvp = _FUNC_JVP
            parts = [rank_batch(objective, r, shape) for r in range(world)]
            loss, _ = objective(reference, torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]),
                                draws=concat([p[2] for p in parts]))
            loss.backward()
            err = max(((grads[n] - p.grad).norm() / p.grad.norm().clamp_min(1e-12)).item()
                      for n, p in reference.named_parameters())
            print(f"RESULT ran; max relative gradient error vs one process {err:.1e}", flush=True)
    except Exception as e:  # noqa: BLE001 -- the failure is the finding
        where = [line.strip() for line in traceback.format_exc().splitlines() if line.strip().startswith("File")]
        print(f"RESULT rank {rank} failed: {type(e).__name__}: {str(e).splitlines()[0][:160]} "
              f"(at {where[-1][:160] if where else '?'})", flush=True)
        os._exit(3)  # the other rank may wait in a collective
    dist.destroy_process_group()


def probe(how: str, jvp: str, timeout: float, port: int) -> tuple[str, float]:
    start = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, __file__, "--one", how, jvp, str(port)], capture_output=True, text=True,
                             timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})
        # both ranks print to one pipe: their lines may run together
        lines = [r.strip() for r in re.findall(r"RESULT (.*?)(?=RESULT |\n|$)", out.stdout + out.stderr)]
        if not lines:
            crash = [line for line in out.stderr.splitlines() if "terminated with" in line or "Error" in line]
            lines = [f"no result, exit {out.returncode}: {crash[-1][-160:] if crash else '?'}"]
        return "; ".join(lines), time.perf_counter() - start
    except subprocess.TimeoutExpired:
        return f"hangs (no result in {timeout:.0f} s; the ranks wait in mismatched collectives)", timeout


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--timeout", type=float, default=90)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--only", nargs="*", help="JVP methods to probe (default: all)")
    args = parser.parse_args()
    if args.one:
        how, jvp, port = args.one
        mp.spawn(one_rank, args=(2, how, jvp, port), nprocs=2)
        return
    from bench.machine import machine_name
    rows = [f"### FSDP x JVP, 2 ranks gloo, torch {torch.__version__}, {machine_name(torch.device('cpu'))}", "",
            "| wrapping | JVP | outcome |", "|---|---|---|"]
    for i, how in enumerate(WRAPS):
        for j, jvp in enumerate(JVPS):
            if args.only and jvp not in args.only:
                continue
            outcome, seconds = probe(how, jvp, args.timeout, 29500 + 10 * i + j)
            rows.append(f"| {how} | {jvp} | {outcome} |")
            print(rows[-1], f"({seconds:.0f} s)", flush=True)
    rows += ["", *(f"- {k}: {v}" for k, v in WRAPS.items()), ""]
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
