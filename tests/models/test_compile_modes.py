"""model.compile's modes: the value reaches torch.compile, a CUDA-graph mode is generation-only, and a
recorded graph's reused output memory cannot reach a sampler that holds two outputs at once (Heun, CFG)."""
import csv

import pytest
import torch

from dmf.build import build_network
from dmf.config import validate
from dmf.core.errors import ConfigError
from dmf.models.compile import compile_network
from tests.helpers import compose_config, run_python, tiny_dmft


@pytest.mark.parametrize("value, mode", [("true", "default"), ("reduce-overhead", "reduce-overhead"),
                                         ("max-autotune-no-cudagraphs", "max-autotune-no-cudagraphs")])
def test_the_typed_mode_reaches_torch_compile(value, mode, monkeypatch):
    seen = {}

    def spy(fn, **kwargs):
        seen.update(kwargs)
        return fn

    monkeypatch.setattr(torch, "compile", spy)
    cfg = compose_config(["experiment=digits_dmf", f"model.compile={value}"])
    validate(cfg)
    build_network(cfg)
    assert seen["mode"] == mode


def test_an_unknown_mode_is_one_error_listing_the_modes():
    cfg = compose_config(["experiment=digits_dmf", "model.compile=fast"])
    with pytest.raises(ConfigError, match="model.compile='fast' must be true, false or a torch.compile mode: "
                                          "default | reduce-overhead"):
        validate(cfg)


def test_training_refuses_cuda_graphs_before_building_anything(tmp_path):
    out = run_python("run.py", "experiment=digits_dmf", "debug=tiny", "model.compile=reduce-overhead",
                     f"run_dir={tmp_path / 'run'}")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert "model.compile=reduce-overhead records CUDA graphs" in out.stderr
    assert "train with model.compile=true" in out.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def _held_outputs(net, device):
    """Two calls whose outputs are both used afterwards, as Heun's two slopes or CFG's two branches are."""
    gen = torch.Generator().manual_seed(0)
    x1, x2 = (torch.randn(4, 1, 8, 8, generator=gen).to(device) for _ in range(2))
    t, r, y = torch.full((4,), 0.7, device=device), torch.full((4,), 0.2, device=device), torch.arange(4, device=device)
    outs = []
    for _ in range(3):  # a CUDA graph is recorded on a later call than the first
        first = net(x1, t, r, y)
        second = net(x2, t, r, y)
        outs.append((first, second))
    return outs


def test_held_outputs_of_a_cuda_graph_mode_network_are_its_own_on_cpu():
    """On a CPU no graph is recorded: the wrapper's step marks and copies must leave the numbers unchanged."""
    net = tiny_dmft().eval().requires_grad_(False)
    with torch.no_grad():
        eager = _held_outputs(net, "cpu")
        compile_network(net, backend="aot_eager", mode="reduce-overhead", log=lambda _: None)
        compiled = _held_outputs(net, "cpu")
    for (a, b), (c, d) in zip(eager, compiled):
        torch.testing.assert_close(c, a)
        torch.testing.assert_close(d, b)
    assert compiled[-1][0].data_ptr() != compiled[-1][1].data_ptr()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_held_outputs_survive_cuda_graph_replays_on_a_gpu():
    torch.manual_seed(0)
    net = tiny_dmft().cuda().eval().requires_grad_(False)
    with torch.no_grad():
        eager = _held_outputs(net, "cuda")
        compile_network(net, mode="reduce-overhead", log=lambda _: None)
        compiled = _held_outputs(net, "cuda")
    for (a, b), (c, d) in zip(eager, compiled):
        torch.testing.assert_close(c, a, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(d, b, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_eval_with_cuda_graph_mode_scores_as_eager(tmp_path):
    """Through run.py, the key a user types: on a CPU the mode compiles (inductor) without graphs and scores the
    same images."""
    ckpt = tmp_path / "small.pt"
    torch.save({"ema": tiny_dmft().state_dict()}, ckpt)
    common = ["mode=eval", "debug=tiny", "model.depth=3", "model.hidden_size=32", "model.num_heads=2",
              "model.dmf_depth=2", f"ckpt={ckpt}"]
    scores = {}
    for value in ("false", "reduce-overhead"):
        out = run_python("run.py", *common, f"model.compile={value}", f"run_dir={tmp_path / value}", check=True)
        # one graph: the grid is rendered in the generation's batch size (another shape compiled a second graph)
        assert out.stdout.count("[dmf] model.compile:") == (value != "false"), out.stdout
        with open(tmp_path / value / "eval" / "results.csv", newline="") as f:
            scores[value] = list(csv.DictReader(f))
    (eager,), (compiled,) = scores["false"], scores["reduce-overhead"]
    assert float(compiled["fd_digits"]) == pytest.approx(float(eager["fd_digits"]), rel=1e-3)
