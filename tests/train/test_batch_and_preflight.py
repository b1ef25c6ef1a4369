"""The global batch is what a run states, whatever the device count; a run that cannot be what it says stops
before anything starts, with one message naming the key and the fix."""
import re
from functools import partial

import pytest

from dmf.train.batch import BatchError, batch_layout
from dmf.core.errors import UsageError
from dmf.train.preflight import layout, preflight
from tests.helpers import compose_config, run_python


run_py = partial(run_python, "run.py", timeout=120)


def test_batch_layout_splits_the_global_batch():
    assert batch_layout(256, 8).per_device == 32
    assert (batch_layout(256, 8, max_per_device=16).per_device, batch_layout(256, 8, 16).accumulate) == (16, 2)
    assert (batch_layout(256, 16, 16).per_device, batch_layout(256, 16, 16).accumulate) == (16, 1)
    assert (batch_layout(256, 8, None, 4).per_device, batch_layout(256, 8, None, 4).accumulate) == (8, 4)
    assert batch_layout(96, 2, 20).describe() == "global batch 96 = 2 device(s) x 16 per device x 3 accumulation step(s)"
    with pytest.raises(BatchError, match="global_batch_size=256 does not divide over 3 devices"):
        batch_layout(256, 3)
    with pytest.raises(BatchError, match="32 per device, which trainer.accumulate_grad_batches=3 does not divide"):
        batch_layout(256, 8, None, 3)
    # an explicit accumulation keeps the memory cap: 256 / (1 x 2) = 128 per device against a cap of 16
    with pytest.raises(BatchError, match="gives 128 per device, above data.max_batch_per_device=16 .* set it to 16"):
        batch_layout(256, 1, 16, 2)
    assert batch_layout(256, 1, 16, 32).per_device == 8


@pytest.mark.parametrize("extra,per_device,accumulate", [
    (["trainer.devices=8"], 16, 2),                          # one 8-GPU node: 16 per GPU x 2 = 256
    (["trainer.devices=8", "trainer.num_nodes=2"], 16, 1),   # the authors' 16 GPUs x 16
    (["trainer.devices=8", "data.max_batch_per_device=null"], 32, 1),
])
def test_512_trains_on_the_stated_global_batch(extra, per_device, accumulate):
    b = layout(compose_config(["experiment=dmf_xl_512", "ckpt=x", *extra]))
    assert (b.global_batch, b.per_device, b.accumulate) == (256, per_device, accumulate)


def test_every_imagenet_experiment_states_a_global_batch_of_256():
    out = run_py("experiment=dmf_xl_512", "--cfg", "job")
    assert out.returncode == 0, out.stderr
    assert "global_batch_size: 256" in out.stdout and "max_batch_per_device: 16" in out.stdout
    for exp in ("dmf_xl_256", "sit_xl_256_repa", "sit_xl_512_repa"):
        assert compose_config([f"experiment={exp}"]).data.global_batch_size == 256


def test_the_per_device_batch_cannot_be_set_directly():
    with pytest.raises(Exception, match="data.datamodule.batch_size=4 is derived"):
        layout(compose_config(["experiment=digits_dmf", "+data.datamodule.batch_size=4"]))


@pytest.mark.parametrize("extra, message", [
    (["+optim.warmup_step=100"], "optim.warmup_step is not an option"),
    (["+ema.decy=0.5"], "ema.decy is not an option of ema"),
    (["+trainer.max_step=100"], r"trainer.max_step is not an option of trainer \(did you mean trainer.max_steps\?\)"),
    (["+eval.monitor_sample=100"], "eval.monitor_sample is not an option of eval"),
    # resume=auto, pipelines and paper rows read <run_dir>/checkpoints/last.ckpt
    (["callbacks.checkpoint.dirpath=/elsewhere"], "callbacks.checkpoint.dirpath=/elsewhere: a run's checkpoints live in"),
    (["callbacks.requeue.dirpath=/elsewhere"], "callbacks.requeue.dirpath=/elsewhere"),
    (["callbacks.checkpoint.save_last=false"], "callbacks.checkpoint.save_last=false: last.ckpt is what resumes"),
    (["trainer.precision=foo"], "trainer.precision='foo' must be one of auto, 64, 32, 16,"),
    (["trainer.devices=abc"], "trainer.devices='abc' must be a count, a list of device ids, or auto"),
    (["trainer.devices=0"], "trainer.devices=0 must be at least 1"),
])
def test_a_key_training_would_not_honour_stops_before_training(extra, message, tmp_path):
    """optim and ema are plain dicts read key by key: `+optim.warmup_step` composes, and would train without warm-up;
    checkpoints written elsewhere would not be found by the resume."""
    with pytest.raises(UsageError, match=message):  # run.py prints it as one line
        preflight(compose_config(["experiment=digits_dmf", f"run_dir={tmp_path}", *extra]))
    preflight(compose_config(["experiment=digits_dmf", f"run_dir={tmp_path}", "optim.warmup_steps=100",
                              f"callbacks.checkpoint.dirpath={tmp_path}/checkpoints"]))


def test_the_fid_callbacks_eval_values_stop_training_before_its_first_step(tmp_path):
    """callbacks=with_eval read eval.labels=bogus only at its first FID check, a traceback after training steps."""
    base = ["experiment=digits_dmf", "callbacks=with_eval", f"run_dir={tmp_path}"]
    with pytest.raises(UsageError, match="eval.labels='bogus' must be 'random' or 'balanced'"):
        preflight(compose_config([*base, "eval.labels=bogus"]))
    preflight(compose_config(base))


def test_a_required_checkpoint_is_required():
    out = run_py("experiment=dmf_xl_256")
    assert out.returncode != 0
    assert "ckpt: required; pass the SiT(+REPA) checkpoint to start from, e.g. ckpt=" in out.stderr


def test_more_devices_than_the_machine_has_stop_at_once():
    out = run_py("experiment=digits_dmf", "trainer.devices=8", "trainer.max_steps=1")
    assert out.returncode != 0
    assert "trainer.devices=8 but this machine has no GPU" in out.stderr
    assert "trainer.accelerator=cpu trainer.devices=8" in out.stderr  # the fix, for those who meant it


def test_nodes_that_nothing_starts_stop_at_once_instead_of_waiting_forever(monkeypatch):
    """trainer.num_nodes=2 on a plain machine waited at 'Initializing distributed: MEMBER 1/2' for a node that never
    comes; a SLURM job, torchrun or a hand launch with NODE_RANK starts the others."""
    from dmf.train.preflight import PreflightError, check_devices

    for name in ("SLURM_JOB_ID", "NODE_RANK", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    cfg = compose_config(["experiment=digits_dmf", "trainer.num_nodes=2"])
    with pytest.raises(PreflightError, match="trainer.num_nodes=2, but nothing started this run on other nodes"):
        check_devices(cfg)
    monkeypatch.setenv("NODE_RANK", "0")
    check_devices(cfg)


def test_a_data_root_without_a_dataset_stops_before_training(tmp_path):
    """The folder exists (a missing one is named with the files: test_every_missing_input_is_named_at_once), but
    holds no dataset: the datamodule's index read says so, in one line."""
    ckpt = tmp_path / "sit.pt"
    ckpt.write_bytes(b"")  # only its existence is checked before the data
    (tmp_path / "empty").mkdir()
    out = run_py("experiment=dmf_xl_256", f"ckpt={ckpt}", "trainer.devices=1", f"data.root={tmp_path / 'empty'}",
                 f"hydra.run.dir={tmp_path / 'run'}")
    assert out.returncode == 2, out.stderr[-2000:]
    assert "data:" in out.stderr and "empty" in out.stderr and "data.root or DMF_DATA" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_missing_reference_statistics_file_stops_training_before_it_starts(tmp_path):
    from dmf.train.preflight import PreflightError, check_files

    cfg = compose_config(["experiment=digits_dmf", "callbacks=with_eval", f"eval.ref_stats={tmp_path / 'ref.pkl'}"])
    with pytest.raises(PreflightError, match=r"callbacks.fid.ref_stats: .*ref.pkl does not exist"):
        check_files(cfg)
    cfg.eval.ref_stats = "build"  # computed from eval.ref_source at the first check: nothing to find
    check_files(cfg)


def test_missing_repa_encoder_weights_stop_training_before_it_starts(tmp_path):
    from dmf.train.preflight import PreflightError, check_files

    ckpt = tmp_path / "sit.pt"
    ckpt.write_bytes(b"")
    cfg = compose_config(["experiment=sit_xl_256_repa", f"ckpt={ckpt}",
                          f"objective.encoder.weights={tmp_path / 'dinov2.safetensors'}"])
    with pytest.raises(PreflightError, match=r"objective.encoder.weights: .*dinov2.safetensors does not exist"):
        check_files(cfg)


def test_every_missing_input_is_named_at_once(tmp_path):
    """One run through run.py: the checkpoint, the encoder weights and the dataset folder, each with its key (the
    first alone was named: fix it, launch again, meet the next; the data folder only once the model was built)."""
    out = run_py("experiment=sit_xl_256_repa", f"ckpt={tmp_path / 'sit.pt'}", f"data.root={tmp_path / 'nowhere'}",
                 f"objective.encoder.weights={tmp_path / 'dinov2.safetensors'}", "trainer.devices=1",
                 f"hydra.run.dir={tmp_path / 'run'}")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "error: 3 inputs of the run are not there:" in out.stderr, out.stderr
    assert re.search(r"\n  ckpt: .*sit.pt does not exist", out.stderr), out.stderr
    assert re.search(r"\n  objective.encoder.weights: .*dinov2.safetensors does not exist", out.stderr), out.stderr
    assert re.search(r"\n  data.root: .*nowhere is not a folder", out.stderr), out.stderr


def test_every_optimizer_step_of_an_epoch_is_the_global_batch(tmp_path):
    """Lightning steps at an epoch's last batch even mid-accumulation (the loss still divided by the full count): with
    1,797 digits, 100 per device and 3 accumulation steps, batch 18 was a step on 100 of the 300 samples, at a third
    of the gradient. An epoch now ends on whole steps."""
    from dmf.train.entry import train

    cfg = compose_config(["experiment=digits_flow", "debug=tiny", f"run_dir={tmp_path}", "data.global_batch_size=300",
                          "data.max_batch_per_device=100", "trainer.max_steps=-1", "+trainer.max_epochs=2"])
    trainer = train(cfg).trainer
    assert (trainer.accumulate_grad_batches, trainer.num_training_batches) == (3, 15)  # 1,500 of the 1,797 digits
    assert trainer.global_step == 2 * 15 // 3
