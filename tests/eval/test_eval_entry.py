"""The modes end to end through the real config tree: mode=eval (several step counts, table, plot, reuse and
no-overwrite rules), mode=sample, mode=ref_stats; bad input fails before any work."""
import json

import pytest
import torch
from hydra.utils import instantiate

from tests.eval.eval_helpers import PIXEL_OVERRIDES, TINY_MODEL, compose, tiny_net


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save({"ema": tiny_net().state_dict(), "model": tiny_net(1).state_dict()}, path)
    return path


def config(mode, tmp_path, ckpt, *extra):
    return compose([f"mode={mode}", "eval=digits", f"run_dir={tmp_path}", f"ckpt={ckpt}", *TINY_MODEL,
                    *PIXEL_OVERRIDES, "eval.metrics=[fd_pix,acc_pix]", "eval.num_samples=40", "eval.batch_size=16",
                    "eval.chunk_size=16", "eval.grid_size=16", "eval.device=cpu", *extra])


def run_mode(cfg):
    return instantiate(cfg.mode)(cfg)


def test_eval_several_steps_table_plot_and_reuse(tmp_path, ckpt):
    report = run_mode(config("eval", tmp_path, ckpt, "eval.steps=[1,2]"))
    out = tmp_path / "eval"
    r1 = json.loads((out / "euler_1" / "result.json").read_text())
    assert r1["steps"] == 1 and r1["num_samples"] == 40 and set(r1["metrics"]) == {"fd_pix", "acc_pix"}
    assert r1["metrics"]["fd_pix"] > 0 and 0 <= r1["metrics"]["acc_pix"] <= 1
    assert (out / "euler_2" / "grid.png").exists() and (out / "fd_pix_vs_nfe.png").exists()
    md = (out / "results.md").read_text()
    assert "| euler | 1 | 1 | 1 | 40 |" in md and "| euler | 2 | 1 | 1 | 40 |" in md
    assert (out / "results.csv").read_text().splitlines()[0].startswith("sampler,steps,shift,cfg_scale,num_samples,fd_pix")
    assert len(report["rows"]) == 2

    stamp = (out / "euler_1" / "result.json").stat().st_mtime_ns
    run_mode(config("eval", tmp_path, ckpt, "eval.steps=[1]"))  # same settings: reused, not regenerated
    assert (out / "euler_1" / "result.json").stat().st_mtime_ns == stamp

    with pytest.raises(FileExistsError, match="eval.overwrite=true"):
        run_mode(config("eval", tmp_path, ckpt, "eval.steps=[1]", "seed=5"))
    run_mode(config("eval", tmp_path, ckpt, "eval.steps=[1]", "seed=5", "eval.overwrite=true"))
    r1b = json.loads((out / "euler_1" / "result.json").read_text())
    assert r1b["fingerprint"]["seed"] == 5 and r1b["metrics"] != r1["metrics"]


def test_sample_mode_exports_images(tmp_path, ckpt):
    run_mode(config("sample", tmp_path, ckpt, "eval.save_npz=true"))
    step_dir = tmp_path / "eval" / "euler_1"
    assert len(list((step_dir / "images").glob("*.png"))) == 40
    assert (step_dir / "samples_40x8x8x3.npz").exists() and (step_dir / "grid.png").exists()
    with pytest.raises(ValueError, match="save_png"):
        run_mode(config("sample", tmp_path / "b", ckpt, "eval.save_png=false"))


def test_ref_stats_mode_then_eval_against_file(tmp_path, ckpt):
    ref = tmp_path / "digits_ref.pkl"
    run_mode(config("ref_stats", tmp_path, ckpt, f"eval.ref_out={ref}"))
    with pytest.raises(FileExistsError, match="eval.overwrite=true"):
        run_mode(config("ref_stats", tmp_path, ckpt, f"eval.ref_out={ref}"))
    from dmf.eval.reference.files import load_reference

    stats = load_reference(str(ref))
    assert set(stats) == {"fd_pix"} and stats["fd_pix"]["mu"].shape == (12,)
    run_mode(config("eval", tmp_path / "file", ckpt, f"eval.ref_stats={ref}"))
    # ref_stats=build: the same statistics, computed inline (read by DataLoader workers: eval.num_workers)
    run_mode(config("eval", tmp_path / "built", ckpt, "eval.num_workers=2"))
    a = json.loads((tmp_path / "file" / "eval" / "euler_1" / "result.json").read_text())["metrics"]
    b = json.loads((tmp_path / "built" / "eval" / "euler_1" / "result.json").read_text())["metrics"]
    assert a["fd_pix"] == pytest.approx(b["fd_pix"], rel=1e-9)


def test_bad_input_fails_before_work(tmp_path, ckpt):
    with pytest.raises(ValueError, match="ckpt="):
        run_mode(config("eval", tmp_path / "a", "null"))
    with pytest.raises(ValueError, match="mode=ref_stats"):
        run_mode(config("eval", tmp_path / "b", ckpt, "eval.ref_stats=null"))
    with pytest.raises(ValueError, match="unknown"):
        run_mode(config("eval", tmp_path / "c", ckpt, "eval.metrics=[fid_typo]"))
    with pytest.raises(ValueError, match="eval.steps"):
        run_mode(config("eval", tmp_path / "d", ckpt, "eval.steps=[0]"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_mode(config("eval", tmp_path / "e", tmp_path / "nope.pt"))
    assert not (tmp_path / "a" / "eval").exists() and not (tmp_path / "e" / "eval").exists()
    pipeline = tmp_path / "pipeline"  # a pipeline's run folder: results.md and results.json
    pipeline.mkdir()
    (pipeline / "results.md").write_text("the pipeline's table")
    (pipeline / "results.json").write_text("{}")
    with pytest.raises(ValueError, match="is a pipeline's run folder"):
        run_mode(config("eval", tmp_path / "f", ckpt, f"eval.out_dir={pipeline}"))
    assert (pipeline / "results.md").read_text() == "the pipeline's table"
