"""Mistakes a user makes on the command line of run.py, in every mode: each is one `error:` line naming the key
or file and the fix, exit status 2, no traceback, and nothing is trained, generated or overwritten."""
import subprocess
from functools import partial
from pathlib import Path

import pytest
import torch

from tests.helpers import compose_config, run_python, tiny_dmft, tiny_sit


run_py = partial(run_python, "run.py")


def assert_one_error(out: subprocess.CompletedProcess, *expected: str):
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    message = out.stderr[out.stderr.index("error: "):]
    for text in expected:
        assert text in message, message


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory) -> Path:
    """Weights of a DMFT smaller than the digits default (the authors' {"ema": ...} layout)."""
    path = tmp_path_factory.mktemp("ckpt") / "small.pt"
    torch.save({"ema": tiny_dmft().state_dict()}, path)
    return path


@pytest.mark.parametrize("mode", ["eval", "sample"])
def test_eval_modes_name_a_missing_checkpoint(tmp_path, mode):
    out = run_py(f"mode={mode}", "debug=tiny", f"ckpt={tmp_path / 'nope.ckpt'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert_one_error(out, "ckpt:", "nope.ckpt does not exist")
    assert not (tmp_path / "run" / "eval").exists()


@pytest.mark.parametrize("mode", ["eval", "export"])
def test_a_malformed_hub_uri_is_one_line(tmp_path, mode):
    out = run_py(f"mode={mode}", "debug=tiny", "ckpt=hf://owner-only", f"hydra.run.dir={tmp_path}")
    assert_one_error(out, "ckpt: 'hf://owner-only' is not hf://")


def test_eval_without_a_checkpoint_asks_for_one(tmp_path):
    assert_one_error(run_py("mode=eval", "debug=tiny", f"hydra.run.dir={tmp_path}"), "pass ckpt=")


@pytest.mark.parametrize("override, expected", [
    ("eval.steps=[0]", "eval.steps=[0]"),
    ("eval.steps=2", "eval.steps=[2]"),  # one step count typed without brackets: the fix is shown
    ("sampler.shift=0", "sampler.shift=0 must be > 0"),
    ("sampler.cfg_max=1.5", "sampler.cfg_min=0.0, sampler.cfg_max=1.5"),
])
def test_a_bad_eval_value_is_one_line(tmp_path, small_ckpt, override, expected):
    out = run_py("mode=eval", "debug=tiny", f"ckpt={small_ckpt}", override, f"hydra.run.dir={tmp_path}")
    assert_one_error(out, expected)


@pytest.mark.parametrize("mode", ["mode=eval", "mode=train"])
def test_a_checkpoint_of_another_network_is_one_line(tmp_path, small_ckpt, mode):
    short = "trainer.max_steps=1" if mode == "mode=train" else "eval.num_samples=10"  # each mode's own key
    out = run_py(mode, "experiment=digits_dmf", f"ckpt={small_ckpt}", short, f"hydra.run.dir={tmp_path}")
    assert_one_error(out, f"ckpt={small_ckpt}", "shape")
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "eval").exists()
    if mode == "mode=train":  # the attempt is kept, as one that never trained
        status = (tmp_path / "config_history" / "attempt_001" / "status").read_text()
        assert status.startswith("failed before training\n"), status


def test_a_checkpoint_of_another_size_names_the_overrides_that_load_it(tmp_path):
    """Our checkpoints record the network's settings: the error gives the overrides to paste, and pasted they load."""
    from dmf.models.checkpoint import ARCHITECTURE_KEY, architecture

    net, ckpt = tiny_dmft(), tmp_path / "last.ckpt"
    torch.save({"state_dict": {f"ema_net.{k}": v for k, v in net.state_dict().items()},
                ARCHITECTURE_KEY: architecture(net)}, ckpt)
    command = ["mode=eval", "experiment=digits_dmf", f"ckpt={ckpt}", "eval.num_samples=20", "eval.steps=[1]"]
    out = run_py(*command, f"hydra.run.dir={tmp_path / 'refused'}")
    assert_one_error(out, "depth=3 (config builds 6",
                     "Fix: add model.dmf_depth=2 model.num_heads=2 model.depth=3 model.hidden_size=32")
    paste = out.stderr.split("Fix: add ")[1].split(",")[0].split()
    assert sorted(paste) == ["model.depth=3", "model.dmf_depth=2", "model.hidden_size=32", "model.num_heads=2"]
    run_py(*command, *paste, f"hydra.run.dir={tmp_path / 'pasted'}", check=True)
    assert (tmp_path / "pasted" / "eval").is_dir()


def test_a_resume_with_a_changed_setting_is_one_line(tmp_path):
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    torch.save({"dmf_config": {"seed": 7}}, last)  # what the guard reads: the config the run was trained with
    out = run_py("mode=train", "debug=tiny", f"hydra.run.dir={tmp_path}")
    assert_one_error(out, "seed: 7 -> 0", "cannot change mid-run")


def test_export_mistakes_are_one_line(tmp_path, small_ckpt):
    assert_one_error(run_py("mode=export", f"hydra.run.dir={tmp_path}"), "mode=export needs ckpt=")
    assert_one_error(run_py("mode=export", f"ckpt={tmp_path / 'nope.ckpt'}", f"hydra.run.dir={tmp_path}"),
                     "ckpt:", "nope.ckpt does not exist")
    earlier = small_ckpt.with_name("small-ema.pt")
    earlier.write_bytes(b"an export made earlier")
    out = run_py("mode=export", f"ckpt={small_ckpt}", f"hydra.run.dir={tmp_path}")
    assert_one_error(out, "would replace", "mode.overwrite=true")
    assert earlier.read_bytes() == b"an export made earlier"
    out = run_py("mode=export", f"ckpt={small_ckpt}", f"mode.out={tmp_path}", f"hydra.run.dir={tmp_path}")
    assert_one_error(out, f"mode.out={tmp_path} is a folder", f"mode.out={tmp_path}/model")
    assert not tmp_path.with_name(tmp_path.name + ".pt").exists()


def test_resume_names_a_missing_checkpoint(tmp_path):
    out = run_py("mode=train", "debug=tiny", f"resume={tmp_path / 'nope.ckpt'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert_one_error(out, "resume=", "nope.ckpt does not exist")


def test_a_new_start_does_not_replace_the_run_in_its_run_dir(tmp_path):
    """resume=null in a run dir that holds a run would overwrite its last.ckpt with a new run's."""
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"the earlier run's weights")
    out = run_py("mode=train", "debug=tiny", "resume=null", f"hydra.run.dir={tmp_path / 'run'}")
    assert_one_error(out, f"{last.parent} holds the run of this run dir (last.ckpt)", "resume=auto", "run_dir=<folder>")
    assert last.read_bytes() == b"the earlier run's weights" and not (tmp_path / "run" / "logs").exists()


def test_a_bad_preprocess_option_is_named_before_the_vae_is_fetched(tmp_path):
    """The VAE (a hub download online, an error offline) was built before the options were read."""
    from dmf.core.errors import ConfigError
    from dmf.data.preprocess import main

    (tmp_path / "images" / "a").mkdir(parents=True)
    for typed, message in (("preprocess.layout=bogus", "preprocess.layout='bogus': expected one of"),
                           ("preprocess.shard_size=abc", "preprocess.shard_size='abc' must be an integer >= 1")):
        cfg = compose_config(["mode=preprocess", "data=imagenet256_latents", f"data.root={tmp_path / 'out'}",
                              f"preprocess.input={tmp_path / 'images'}", "data.vae.path=/nowhere/vae", typed])
        with pytest.raises(ConfigError, match=message):
            main(cfg)


def test_preprocess_mistakes_are_one_line_before_the_vae_loads(tmp_path):
    assert_one_error(run_py("mode=preprocess", f"hydra.run.dir={tmp_path / 'a'}"), "preprocess.out", "data=")
    out = run_py("mode=preprocess", "data=imagenet256_latents", f"data.root={tmp_path / 'latents'}",
                 f"preprocess.input={tmp_path / 'no_images'}", f"hydra.run.dir={tmp_path / 'b'}")
    assert_one_error(out, f"preprocess.input={tmp_path / 'no_images'}", "does not exist")
    assert "VAE" not in out.stderr and not (tmp_path / "latents").exists()


def test_a_flow_models_checkpoint_is_not_sampled_as_a_flow_map(tmp_path):
    """mode=eval ckpt=<the flow stage's checkpoint> without experiment=digits_flow built a DMFT around the SiT's
    weights (new log-variance head, decoder conditioned on r) and scored that network as if it were trained."""
    sit = tmp_path / "sit.pt"
    torch.save({"ema": tiny_sit(depth=5).state_dict()}, sit)
    out = run_py("mode=eval", "debug=tiny", f"ckpt={sit}", "eval.steps=[1]", f"hydra.run.dir={tmp_path / 'run'}")
    assert_one_error(out, "logvar_linear", "experiment=digits_flow")
    assert not (tmp_path / "run" / "eval").exists()


def test_a_vae_that_cannot_be_found_is_one_line(tmp_path, monkeypatch):
    """The SD-VAE is built by Hydra (data.vae): its error came wrapped in Hydra's own multi-line message, exit 1."""
    init = tmp_path / "init.pt"
    run_python("bench/init_checkpoint.py", "--model", "DMFT-XL/2", "--input-size", "8", "--size", "3", "32", "2",
               "--dmf-depth", "2", "--out", str(init), check=True)
    monkeypatch.setenv("DMF_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_cache"))
    out = run_py("mode=sample", "experiment=dmf_xl_256", f"ckpt={init}", "model.depth=3", "model.hidden_size=32",
                 "model.num_heads=2", "model.dmf_depth=2", "data.resolution=64", f"hydra.run.dir={tmp_path / 'run'}")
    assert_one_error(out, "stabilityai/sd-vae-ft", "data.vae.path=")
    assert not (tmp_path / "run" / "eval").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the mistake is asking for a GPU on a machine without one")
def test_eval_on_a_gpu_that_is_not_there_is_one_line(tmp_path, small_ckpt):
    out = run_py("mode=eval", "debug=tiny", f"ckpt={small_ckpt}", "eval.device=cuda", f"hydra.run.dir={tmp_path}")
    assert_one_error(out, "eval.device=cuda", "no CUDA GPU", "eval.device=auto")


def test_a_split_that_does_not_fit_the_model_is_one_line(tmp_path):
    out = run_py("mode=train", "experiment=digits_dmf", "model.name=MF-T/2", "debug=tiny", f"hydra.run.dir={tmp_path}")
    assert_one_error(out, "model.dmf_depth=4 does not apply to MF-T/2", "model.dmf_depth=null")
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_a_refused_launch_leaves_the_runs_record_as_it_was(tmp_path, monkeypatch):
    """Hydra rewrites <run>/.hydra before anything can be checked: each refused relaunch (a changed setting, a new
    start over the run, a bad value) puts back the accepted launch's record, which `mode=collect` and users read."""
    run = ["mode=train", "debug=tiny", f"run_dir={tmp_path}"]
    run_py(*run, "trainer.max_steps=1", check=True)
    record = {p.name: p.read_text() for p in (tmp_path / ".hydra").iterdir()}
    for mistake, expected in (["optim.lr=0.5", "cannot change mid-run"], ["resume=null", "resume=auto"],
                              ["model.dmf_depth=9", "must satisfy"]):
        assert_one_error(run_py(*run, "trainer.max_steps=2", mistake), expected)
        assert {p.name: p.read_text() for p in (tmp_path / ".hydra").iterdir()} == record, mistake
    assert "trainer.max_steps=1" in record["overrides.yaml"]
    # an evaluation into the run's folder that fails inside a piece Hydra builds (Inception weights, offline), and
    # an export into it that succeeds: one error line, and the run's record is still its training's
    ckpt = f"ckpt={tmp_path / 'checkpoints' / 'last.ckpt'}"
    monkeypatch.setenv("DMF_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no_hub"))
    failed = run_py("mode=eval", "debug=tiny", ckpt, "eval.metrics=[fid]", "eval.num_samples=8", f"run_dir={tmp_path}")
    assert_one_error(failed, "Inception-V3 weights", "eval.inception_weights")
    run_py("mode=export", "debug=tiny", ckpt, f"run_dir={tmp_path}", check=True)
    assert {p.name: p.read_text() for p in (tmp_path / ".hydra").iterdir()} == record


@pytest.mark.parametrize("mode, group, misspelt, meant", [
    ("mode=eval", "eval", "num_sample: 100", "eval.num_samples"),
    ("mode=train callbacks=with_eval", "eval", "monitor_sample: 100", "eval.monitor_samples"),  # the FID callback's
    ("mode=preprocess", "preprocess", "shard_sise: 10", "preprocess.shard_size"),
    ("mode=train", "data", "global_batch_sise: 64", "data.global_batch_size"),  # would train at 128
])
def test_a_misspelt_key_in_a_users_group_file_is_one_line(tmp_path, mode, group, misspelt, meant):
    """A group file the user writes (here found through --config-dir) is merged without Hydra's key check, and
    eval and preprocess are read key by key: the misspelt key would be ignored, e.g. 50,000 samples instead of 100."""
    (tmp_path / "conf" / group).mkdir(parents=True)
    parent = {"eval": "digits", "preprocess": "default", "data": "digits"}[group]
    (tmp_path / "conf" / group / "mine.yaml").write_text(f"defaults:\n  - {parent}\n  - _self_\n{misspelt}\n")
    own = {"mode=eval": [f"ckpt={tmp_path / 'none.pt'}"], "mode=preprocess": ["preprocess.input=."]}.get(mode, [])
    out = run_py("--config-dir", str(tmp_path / "conf"), *mode.split(), "debug=tiny", f"{group}=mine",
                 f"run_dir={tmp_path / 'run'}", *own)
    assert_one_error(out, f"{group}.{misspelt.split(':')[0]} is not an option of {group}", f"did you mean {meant}?")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_the_known_keys_of_eval_preprocess_and_data_are_their_files_keys():
    from omegaconf import OmegaConf

    from dmf.config import DATA_KEYS
    from dmf.data.preprocess import KEYS as PREPROCESS_KEYS
    from dmf.eval.validate import KEYS as EVAL_KEYS

    conf = Path(__file__).resolve().parents[1] / "conf"
    eval_file = [k for k in OmegaConf.load(conf / "eval" / "default.yaml") if k != "defaults"] + ["ref_source"]
    assert sorted(EVAL_KEYS) == sorted(eval_file)
    assert sorted(PREPROCESS_KEYS) == sorted(OmegaConf.load(conf / "preprocess" / "default.yaml"))
    assert sorted(DATA_KEYS) == sorted({k for f in (conf / "data").glob("*.yaml") for k in OmegaConf.load(f)})


def test_a_data_key_of_the_users_own_that_the_config_reads_is_kept():
    """A dataset config of one's own may hold helper keys for its interpolations; only unread keys stop."""
    from dmf.config import validate
    from dmf.core.errors import ConfigError
    from tests.helpers import compose_config

    validate(compose_config(["debug=tiny", "+data.my_seed=3", "data.datamodule.seed=${data.my_seed}"]))
    with pytest.raises(ConfigError, match="data.my_seed is not an option of data"):
        validate(compose_config(["debug=tiny", "+data.my_seed=3"]))
