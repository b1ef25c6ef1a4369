"""Results and partial states are keyed by what produced them (content hashes of the weights and the reference
statistics), not by path; exports asked for later are written; non-finite network output stops evaluation."""
import hashlib
import json
import os

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from dmf.eval.content import content_hash
from dmf.eval.generation.loop import NonFiniteOutput
from tests.eval.eval_helpers import PIXEL_OVERRIDES, TINY_MODEL, compose, tiny_net


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DMF_CACHE", str(tmp_path / "cache"))


def save_weights(path, seed):
    torch.save({"ema": tiny_net(seed).state_dict()}, path)
    return path


def run_mode(mode, run_dir, ckpt, *extra):
    cfg = compose([f"mode={mode}", "eval=digits", f"run_dir={run_dir}", f"ckpt={ckpt}", *TINY_MODEL, *PIXEL_OVERRIDES,
                   "eval.metrics=[fd_pix]", "eval.num_samples=24", "eval.batch_size=8", "eval.chunk_size=8",
                   "eval.grid_size=0", "eval.device=cpu", *extra])
    return instantiate(cfg.mode)(cfg)


def result(run_dir):
    return json.loads((run_dir / "eval" / "euler_1" / "result.json").read_text())


def test_new_weights_under_the_same_path_are_not_reported_as_complete(tmp_path):
    ckpt = save_weights(tmp_path / "last.ckpt", 0)
    run_mode("eval", tmp_path, ckpt)
    first = result(tmp_path)
    assert first["ckpt_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert first["fingerprint"]["ckpt_sha256"] == first["ckpt_sha256"]
    original = ckpt.read_bytes()
    save_weights(ckpt, 1)  # more training, same file name
    with pytest.raises(FileExistsError, match=r"other settings \(differ: ckpt_sha256\).*eval.overwrite=true"):
        run_mode("eval", tmp_path, ckpt)
    # the same content under another name is the same result: reused
    copy = tmp_path / "copy.ckpt"
    copy.write_bytes(original)
    stamp = (tmp_path / "eval" / "euler_1" / "result.json").stat().st_mtime_ns
    run_mode("eval", tmp_path, copy)
    assert (tmp_path / "eval" / "euler_1" / "result.json").stat().st_mtime_ns == stamp


def test_a_resume_never_merges_two_weight_files(tmp_path):
    ckpt = save_weights(tmp_path / "last.ckpt", 0)
    run_mode("eval", tmp_path, ckpt)
    (tmp_path / "eval" / "euler_1" / "result.json").unlink()  # killed after its partial states were saved
    save_weights(ckpt, 1)
    with pytest.raises(FileExistsError, match=r"partial run with other settings \(differ: ckpt_sha256\)"):
        run_mode("eval", tmp_path, ckpt)


def test_reference_statistics_enter_by_content(tmp_path):
    ckpt = save_weights(tmp_path / "w.ckpt", 0)
    ref = tmp_path / "ref.pkl"
    run_mode("ref_stats", tmp_path, ckpt, f"eval.ref_out={ref}")
    run_mode("eval", tmp_path / "e", ckpt, f"eval.ref_stats={ref}")
    assert result(tmp_path / "e")["ref_stats_id"] == "sha256:" + hashlib.sha256(ref.read_bytes()).hexdigest()
    import pickle

    stats = pickle.loads(ref.read_bytes())
    stats["fd_pix"]["mu"] = stats["fd_pix"]["mu"] + 1  # other reference statistics, same path
    ref.write_bytes(pickle.dumps(stats))
    with pytest.raises(FileExistsError, match=r"differ: ref_stats"):
        run_mode("eval", tmp_path / "e", ckpt, f"eval.ref_stats={ref}")


def test_finished_sample_run_writes_newly_requested_exports(tmp_path):
    ckpt = save_weights(tmp_path / "w.ckpt", 0)
    run_mode("sample", tmp_path, ckpt)
    step_dir = tmp_path / "eval" / "euler_1"
    pngs = {p.name: p.read_bytes() for p in (step_dir / "images").glob("*.png")}
    assert len(pngs) == 24 and not list(step_dir.glob("*.npz"))
    run_mode("sample", tmp_path, ckpt, "eval.save_npz=true")
    with np.load(step_dir / "samples_24x8x8x3.npz") as z:
        assert z["arr_0"].shape == (24, 8, 8, 3)
        for i in (0, 23):  # the same images as the PNGs
            from PIL import Image

            png = np.asarray(Image.open(step_dir / "images" / f"{i:06d}.png"))
            np.testing.assert_array_equal(z["arr_0"][i], png)
    assert sorted(result(tmp_path)["exports"]) == ["npz", "png"]
    assert {p.name: p.read_bytes() for p in (step_dir / "images").glob("*.png")} == pngs
    assert not list(step_dir.glob("exports_*"))
    stamp = (step_dir / "result.json").stat().st_mtime_ns
    run_mode("sample", tmp_path, ckpt, "eval.save_npz=true")  # nothing missing now: reused
    assert (step_dir / "result.json").stat().st_mtime_ns == stamp


def test_content_hash_is_cached_by_size_and_mtime(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * 100)
    first = content_hash(path)
    st = path.stat()
    path.write_bytes(b"b" * 100)  # same size; put the old mtime back: the cache answers without reading
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert content_hash(path) == first
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert content_hash(path) == hashlib.sha256(b"b" * 100).hexdigest()


def test_nonfinite_network_output_stops_with_ckpt_and_index(tmp_path):
    net = tiny_net(0)
    with torch.no_grad():
        net.final_layer.linear.bias.fill_(float("nan"))
    ckpt = tmp_path / "diverged.ckpt"
    torch.save({"ema": net.state_dict()}, ckpt)
    with pytest.raises(NonFiniteOutput, match=rf"ckpt={ckpt} produced non-finite values .* sample index 0"):
        run_mode("eval", tmp_path, ckpt)
    assert not (tmp_path / "eval" / "euler_1" / "result.json").exists()
