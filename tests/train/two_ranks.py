"""Two CPU ranks (gloo) through run.py, as a user starts them, with the Recorder callback; and the reference
that a data-parallel step must equal: one process on the concatenated batch with the same per-sample draws."""
from pathlib import Path

import torch
from hydra.utils import instantiate

from dmf.build import build_objective
from dmf.models import load_pretrained
from dmf.objectives.draws import concat
from tests.helpers import compose_config, run_python

TINY = ["model.depth=2", "model.hidden_size=32", "model.num_heads=2", "model.dmf_depth=1",
        "callbacks.progress.refresh_rate=0"]
TORCHRUN = ("-m", "torch.distributed.run", "--nproc_per_node=2")  # python's arguments that make it torchrun
DMF = ["experiment=digits_dmf", *TINY, "data.global_batch_size=16", "guidance.omega=0.6", "objective.cfg_prob=0.3"]


def save_init(overrides: list[str], path: Path) -> Path:
    torch.manual_seed(0)
    torch.save({"model": instantiate(compose_config(overrides).model).state_dict()}, path)
    return path


def run_two_ranks(overrides: list[str], strategy: list[str], init: Path, out: Path, steps: int = 3,
                  torchrun: bool = False) -> list[dict]:
    """Train `steps` steps on 2 ranks from `init`; the per-rank records (batch, draws, gradients, final state).
    Lightning starts the second rank (trainer.devices=2), or torchrun starts both (trainer.devices left auto)."""
    if torchrun:
        launcher, devices = TORCHRUN, []
    else:
        launcher, devices = (), ["trainer.devices=2", "trainer.accelerator=cpu"]
    proc = run_python("run.py", *overrides, *strategy, *devices, f"trainer.max_steps={steps}", f"ckpt={init}",
                      f"hydra.run.dir={out / 'run'}", "+callbacks.record._target_=tests.train.recorder.Recorder",
                      f"+callbacks.record.path={out / 'rec'}", check=True, launcher=launcher)
    assert "global batch 16 = 2 device(s) x 8 per device x 1 accumulation step(s)" in proc.stdout
    return [torch.load(out / "rec" / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


def single_process_grads(overrides: list[str], init: Path, records: list[dict]) -> dict:
    """The gradient of one process on both ranks' first batches with their draws (the averaged DDP gradient)."""
    cfg = compose_config(overrides)
    net = instantiate(cfg.model)
    load_pretrained(net, init)
    x = torch.cat([r["batch"][0] for r in records])
    y = torch.cat([r["batch"][1] for r in records])
    loss, _ = build_objective(cfg)(net, x, y, draws=concat([r["draws"] for r in records]))
    loss.backward()
    return {name: p.grad for name, p in net.named_parameters()}


def assert_data_parallel_step(overrides: list[str], init: Path, records: list[dict]) -> None:
    """Ranks read their own data and draw independently, hold the same averaged gradient, which equals the
    single-process gradient, and end with the same weights."""
    r0, r1 = records
    assert r0["world_size"] == 2 and r0["batch"][0].shape[0] == 8
    assert not torch.equal(r0["batch"][0], r1["batch"][0])  # each rank reads its own part of the data
    for key in ("t_fm", "t", "r", "e_fm", "e_mf"):
        assert not torch.equal(r0["draws"][key], r1["draws"][key]), key
    for k, v in r0["final"].items():
        assert torch.equal(v, r1["final"][k]), k
    reference = single_process_grads(overrides, init, records)
    assert set(r0["grads"]) == set(reference)
    for name, g in reference.items():
        torch.testing.assert_close(r0["grads"][name], g, rtol=1e-4, atol=1e-6, msg=name)
        assert torch.equal(r0["grads"][name], r1["grads"][name]), name
