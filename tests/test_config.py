"""Every experiment composes and builds; bad configs fail early with one clear message."""
import re
from functools import partial

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from dmf.command_line import command_line
from dmf.config import ConfigError, register_resolvers, sweep_jobs, validate, validate_typed
from tests.helpers import CONF, compose_config, run_python

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def test_the_paper_experiments_exist():
    assert {"digits", "digits_flow", "digits_dmf", "dmf_xl_256", "dmf_xl_512", "sit_xl_256_repa",
            "sit_xl_512_repa"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_validates_and_builds_its_model(experiment, tmp_path):
    cfg = compose_config([f"experiment={experiment}", f"run_dir={tmp_path}"])
    validate(cfg)
    with torch.device("meta"):
        net = instantiate(cfg.model)
    assert net.input_size == cfg.data.latent_size and net.num_classes == cfg.data.num_classes
    instantiate(cfg.sampler)


def test_paper_settings_reach_the_built_objects(tmp_path):
    cfg = compose_config(["experiment=dmf_xl_512", f"run_dir={tmp_path}"])
    with torch.device("meta"):
        net = instantiate(cfg.model)
    assert type(net).__name__ == "DMFT" and net.depth == 28 and net.dmf_depth == 20
    assert net.pos_embed.shape == (1, 1024, 1152) and hasattr(net.blocks[0].attn.q_norm, "scale")
    assert cfg.guidance.g_max == 0.8 and instantiate(cfg.sampler).shift == 1.5


@pytest.mark.parametrize("override, message", [
    ("model.dmf_depth=28", "model.dmf_depth=28 must satisfy 0 < dmf_depth < depth=28"),
    ("data.resolution=260", "data.resolution=260 is not divisible by 16"),
    ("guidance.omega=strong", "guidance.omega='strong' must be a number"),
    ("sampler.steps=0", r"sampler.steps=0 must be >= 1"),
    ("model.name=DMFT-XXL/2", "model.name='DMFT-XXL/2' is not <family>-<size>/<patch>"),
    ("objective=fm", "objective=fm trains a flow model .* set guidance=none"),
    ("model.depth=0", r"model.depth=0 must be >= 1"),  # not the named size's depth in disguise
    ("optim.warmup_steps=-5", r"optim.warmup_steps=-5 must be >= 0"),
    ("attention.backend=foo", r"unknown attention backend 'foo'; choose one of \['flash', 'fused_jvp', 'math', 'sdpa'"),
    # ranges the objects check only once built (the flow stage of a pipeline had trained by then)
    ("guidance.g_max=5", r"guidance.g_min=0.0, guidance.g_max=5: need 0 <= g_min <= g_max <= 1"),
    ("time.P_std_r=-2", r"time.P_std_r=-2 must be >= 0"),
    ("trainer.max_steps=0", "trainer.max_steps=0 trains nothing"),
    # a key added to a group that builds an object not taking it: Hydra's multi-line block when built
    ("+model.foo=1", r"model.foo is not an option of this model \(dmf.models.build_model takes name, "),
    ("+objective.repa_weight=0.5", r"objective.repa_weight is not an option of this objective .*DMFLoss"),
    ("+sampler.gamma=0.5", r"sampler 'euler' takes no options \['gamma'\]"),
    ("objective.cfg_prob=0", r"objective.cfg_prob=0 never trains the null class, which model guidance's target reads"),
])
def test_bad_configs_fail_with_one_clear_message(override, message, tmp_path):
    cfg = compose_config(["experiment=dmf_xl_256", f"run_dir={tmp_path}", override])
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


@pytest.mark.parametrize("weight, message", [("-1", r"repa_weight=-1 must be >= 0.0"),
                                             ("abc", "repa_weight='abc' must be a number")])
def test_a_repa_weight_that_would_silently_be_off_or_crash_is_refused(weight, message, tmp_path):
    cfg = compose_config(["experiment=digits_flow", f"run_dir={tmp_path}", f"objective.repa_weight={weight}"])
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


SAMPLERS = {"euler": "FlowMapEuler", "restart": "FlowMapRestart", "gamma": "FlowMapGamma", "flow_euler": "FlowEuler",
            "flow_heun": "FlowHeun", "flow_sde": "FlowSDE"}


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_one_sampler_file_per_sampler_with_only_its_own_options(name, tmp_path):
    model = [] if name.startswith("flow_") else ["experiment=digits_dmf"]
    cfg = compose_config([*model, f"sampler={name}", f"run_dir={tmp_path}", "sampler.cfg_scale=2", "sampler.cfg_max=0.7"])
    validate(cfg)
    sampler = instantiate(cfg.sampler)
    assert type(sampler).__name__ == SAMPLERS[name] and sampler.name == name
    assert (sampler.cfg_scale, sampler.cfg_max) == (2, 0.7)
    assert ("gamma" in cfg.sampler) == (name == "gamma")


def test_a_flow_model_is_not_sampled_as_a_flow_map(tmp_path):
    cfg = compose_config(["experiment=digits_flow", "sampler=restart", f"run_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"but SiT-T/2 is a flow model: use sampler=flow_euler\|flow_heun\|flow_sde"):
        validate(cfg)


def test_readme_sampler_sweep_composes_for_every_job(tmp_path):
    """`sampler=euler,restart,gamma` (README ablations): every job composes; gamma's own option only in gamma."""
    for name in ("euler", "restart", "gamma"):
        validate(compose_config(["experiment=dmf_xl_256", f"sampler={name}", "sampler.shift=1.5", f"run_dir={tmp_path}"]))
    with pytest.raises(Exception, match="Could not override 'sampler.gamma'"):
        compose_config(["sampler=euler", "sampler.gamma=0.3"])
    assert compose_config(["sampler=gamma", "sampler.gamma=0.1"]).sampler.gamma == 0.1


def test_guidance_files_build_through_target_without_a_type_key(tmp_path):
    for name, cls in (("none", "NoGuidance"), ("mg", "ModelGuidance")):
        cfg = compose_config([f"guidance={name}", f"run_dir={tmp_path}"])
        assert "type" not in cfg.guidance and type(instantiate(cfg.guidance)).__name__ == cls
    assert "omega" not in compose_config(["experiment=digits_flow"]).guidance  # none has no options of its own
    # README ablation `guidance=none,mg` on an experiment that sets omega: none ignores the experiment's options
    assert type(instantiate(compose_config(["experiment=dmf_xl_256", "guidance=none"]).guidance)).__name__ == "NoGuidance"


@pytest.mark.parametrize("model", ["dmft", "sit", "mf"])
def test_every_model_family_takes_model_compile(model):
    assert compose_config([f"model={model}", "model.compile=true"]).model.compile is True


@pytest.mark.parametrize("guidance, omega", [("mg", 0.6), ("distill", 2.5)])
def test_the_digits_omega_stays_with_model_guidance(guidance, omega):
    """digits_dmf's omega 0.2 is a preset of model guidance (guidance=mg_digits): choosing another guidance gives
    that guidance's own omega, not 0.2 read as a CFG scale of the teacher."""
    assert compose_config(["experiment=digits_dmf"]).guidance.omega == 0.2
    assert compose_config(["experiment=digits_dmf", f"guidance={guidance}"]).guidance.omega == omega


@pytest.mark.parametrize("typed, message", [
    (["mode=sample", "experiment=dmf_xl_256", "sampler.steps=2"], "eval.steps=[1, 2, 4] lists the step counts"),
    (["mode=train", "sampler.steps=2"], "not used by mode=train"),
    (["mode=train", "experiment=dmf_xl_256", "guidance=none", "guidance.g_max=0.5"], "guidance=none has no options"),
    (["mode=train", "experiment=digits_flow", "time.P_mean_r=-0.8"], "objective=fm (a flow model) draws one time"),
])
def test_a_typed_key_the_mode_would_not_read_is_refused(typed, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_typed(compose_config(typed), typed)


def test_a_number_where_a_number_belongs(tmp_path):
    cfg = compose_config(["experiment=dmf_xl_256", f"run_dir={tmp_path}", "sampler=gamma", "sampler.gamma=abc"])
    with pytest.raises(ConfigError, match="sampler.gamma='abc' must be a number"):
        validate(cfg)
    validate(compose_config(["experiment=dmf_xl_256", f"run_dir={tmp_path}", "attention.backend=fused_jvp"]))


@pytest.mark.parametrize("typed", [["mode=eval", "eval.overwrite=no"], ["mode=train", "model.qk_norm=yes"],
                                   ["mode=export", "mode.overwrite=maybe"], ["mode=eval", "eval.save_npz=1"]])
def test_a_word_typed_for_a_boolean_is_refused(typed):
    """Hydra keeps `no` as the text 'no', which Python reads as true: eval.overwrite=no deleted a finished result."""
    register_resolvers()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=typed)
        with pytest.raises(ConfigError, match=re.escape(f"{typed[1]}: {typed[1].split('=')[0]} is true or false")):
            validate_typed(cfg, typed)
        ok = [typed[0], typed[1].split("=")[0] + "=false", "model.compile=reduce-overhead"]
        validate_typed(compose(config_name="config", overrides=ok), ok)
        ok = ["mode=train", "guidance.omega=0.3", "trainer.fast_dev_run=2"]  # Lightning's number of batches
        validate_typed(compose(config_name="config", overrides=ok), ok)


def test_a_boolean_written_as_text_is_refused_wherever_it_comes_from():
    """eval.save_png defaults to null (decided per mode), so the typed-key check cannot know it is a boolean; a quoted
    "no" in a yaml file is text too (bare no/off/yes are booleans in YAML 1.1, which Hydra reads)."""
    for typed in (["mode=sample", "eval.save_png=no"], ["mode=eval", "eval.overwrite='no'"]):
        with pytest.raises(ConfigError, match=r"eval\.\w+='no' is text, which counts as true"):
            validate(compose_config(typed))
    validate(compose_config(["mode=sample", "eval.save_png=false", "model.compile=default"]))
    validate(compose_config(["paper=digits_ablation", "paper.title=no", "paper.rows.dmf.label=off"]))  # free text


def test_an_empty_value_or_a_file_as_run_dir_is_refused(tmp_path):
    """`ckpt=$CKPT` with the variable unset trained a checkpoint-requiring experiment from random weights."""
    with pytest.raises(ConfigError, match=r"ckpt= has no value \(an unset shell variable\?\): give one, or ckpt=null"):
        command_line(["experiment=dmf_xl_256", "ckpt="])
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="run_dir=.*file is a file, not a folder"):
        command_line([f"run_dir={tmp_path / 'file'}"])
    assert command_line(["~callbacks.fid", "ckpt=null"]) == ["~callbacks.fid", "ckpt=null"]


def test_sampler_steps_is_read_where_eval_steps_is_null():
    typed = ["mode=eval", "sampler.steps=2"]
    validate_typed(compose_config(typed), typed)


def test_root_defaults_are_the_digits_setting(tmp_path):
    """`python run.py mode=train` trains the digits DMF stage (not a DMFT-XL/2 on 8x8 digits)."""
    cfg = compose_config(["mode=train", f"run_dir={tmp_path}"])
    validate(cfg)
    assert cfg.model.name == "DMFT-T/2" and cfg.data.name == "digits" and cfg.mode._target_.endswith("train")
    assert compose_config([f"run_dir={tmp_path}"]).mode._target_ == "dmf.pipelines.recipe.run"


def test_sweep_folders_are_named_from_the_overrides():
    """(the real folder names: tests/pipelines/test_recipe.py's sweep)"""
    out = run_cli("--cfg", "hydra")
    assert out.returncode == 0, out.stderr
    assert "subdir: ${dmf.job_dir:${hydra:job.override_dirname}}" in out.stdout and "- hydra/launcher" in out.stdout


def test_long_override_lists_give_folder_names_the_file_system_accepts():
    from dmf.config import job_dir_name

    assert job_dir_name("guidance.omega=0.6,sampler=restart") == "guidance.omega=0.6,sampler=restart"
    long = ",".join(f"model.key_{i}=value_{i}" for i in range(40))
    short = job_dir_name(long)
    assert len(short) == 120 and short.startswith(long[:100]) and short != job_dir_name(long + "x")


run_cli = partial(run_python, "run.py", timeout=120)


def test_cli_prints_the_composed_config():
    out = run_cli("experiment=dmf_xl_256", "--cfg", "job")
    assert out.returncode == 0, out.stderr
    assert "name: DMFT-XL/2" in out.stdout and "dmf_depth: 20" in out.stdout and "omega: 0.6" in out.stdout


def test_cli_rejects_unknown_keys_and_bad_values_before_work():
    typo = run_cli("experiment=dmf_xl_256", "guidance.omegaa=0.4", "--cfg", "job")
    assert typo.returncode != 0 and "Key 'omegaa' is not in struct" in typo.stderr
    bad = run_cli("experiment=digits_dmf", "model.dmf_depth=9", "hydra.run.dir=/tmp/dmf-cli-bad")
    assert bad.returncode != 0 and "model.dmf_depth=9 must satisfy 0 < dmf_depth < depth=6" in bad.stderr


def test_run_dir_moves_the_whole_run(tmp_path):
    """`run_dir=X` puts Hydra's .hydra/ and run.log in X too (they stayed in outputs/ before). A launch refused in a
    folder it made leaves no folder (a newcomer's typos filled outputs/ with .hydra/ + empty run.log folders)."""
    run_dir = tmp_path / "mine"
    run_dir.mkdir()
    out = run_cli("experiment=dmf_xl_256", "mode=train", f"run_dir={run_dir}")  # stops at once: ckpt is required
    assert out.returncode == 2 and "ckpt" in out.stderr
    assert (run_dir / ".hydra" / "config.yaml").exists() and (run_dir / "run.log").exists()
    assert f"run_dir: {run_dir}" in (run_dir / ".hydra" / "config.yaml").read_text()
    fresh = tmp_path / "fresh" / "run"
    out = run_cli("experiment=dmf_xl_256", "mode=train", f"run_dir={fresh}")
    assert out.returncode == 2 and "ckpt" in out.stderr and not (tmp_path / "fresh").exists()


def test_run_dir_is_refused_where_it_cannot_mean_one_folder(tmp_path):
    sweep = run_cli("-m", "experiment=digits_dmf", "guidance.omega=0.4,0.6", f"run_dir={tmp_path}")
    assert sweep.returncode == 2 and f"set hydra.sweep.dir={tmp_path} instead" in sweep.stderr
    assert not any(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="name two folders"):
        command_line(["run_dir=a", "hydra.run.dir=b"])
    assert command_line(["run_dir=a", "hydra.run.dir=a"]) == ["run_dir=a", "hydra.run.dir=a"]
    # Lightning's DDP launcher starts rank 1 with the run's folder appended, quoted
    assert command_line(["run_dir=a", "hydra.run.dir=a", 'hydra.run.dir="a"'])[-1] == 'hydra.run.dir="a"'
    assert command_line(["guidance.omega=0.4"]) == ["guidance.omega=0.4"]


@pytest.mark.parametrize("typed, message", [
    (["trainer.max_step=2"], "error: trainer.max_step is not a key of this config; did you mean trainer.max_steps?"),
    (["experiment=digits_dmf", "guidance=none", "guidance.omega=0.3"], "the guidance chosen has no options"),
    (["sampler=eulr"], "error: sampler=eulr is not an option of sampler: euler, flow_euler, flow_heun,"),
])
def test_a_misspelt_key_or_option_is_one_line_with_the_near_one(typed, message, tmp_path):
    """Hydra's own message is several lines and advises `+key=...`, which adds a key nothing reads."""
    out = run_cli(*typed, f"hydra.run.dir={tmp_path / 'run'}")
    assert out.returncode == 2 and "Traceback" not in out.stderr and message in out.stderr, out.stderr[-2000:]
    assert "+trainer.max_step" not in out.stderr and not (tmp_path / "run").exists()


def test_a_stage_or_row_key_typed_for_the_launching_config_names_where_it_goes(tmp_path):
    """`python run.py objective.repa_weight=0.5` said "objective has cfg_prob, logvar_pairs, jvp" (the default
    pipeline's own objective is DMF's), though its flow stage has the key; the stage override it names composes."""
    from dmf.config import check_launch

    expected = ("objective.repa_weight is a key of stage flow, not of the pipeline's own config: give it to the "
                "stage with 'pipeline.stages.flow.overrides=[\"objective.repa_weight=0.5\"]'")
    with pytest.raises(ConfigError, match=f"^{re.escape(expected)}$") as caught:
        check_launch(["objective.repa_weight=0.5"], str(CONF))
    check_launch([str(caught.value).rsplit("with ", 1)[1].strip("'")], str(CONF))
    with pytest.raises(ConfigError, match=r"guidance.omega is a key of rows mf_mg, dmf_mg, mf_mg_repa, dmf_mg_repa "
                                          r"of paper=digits_ablation, .* conf/paper/digits_ablation.yaml"):
        check_launch(["-m", "paper=digits_ablation", "guidance.omega=0.3"], str(CONF))


def test_a_bad_value_in_a_later_sweep_job_stops_the_sweep_before_its_first_job(tmp_path):
    """`-m seed=0,x` trained seed 0 (or queued it on SLURM) and only then stopped at seed x."""
    out = run_cli("-m", "mode=train", "debug=tiny", "trainer.max_steps=1", "seed=0,x", f"hydra.sweep.dir={tmp_path / 's'}")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "error: sweep job `mode=train debug=tiny trainer.max_steps=1 seed=x" in out.stderr
    assert "seed='x' must be an integer (nothing of the sweep has run)" in out.stderr
    assert not (tmp_path / "s").exists()
    assert sweep_jobs(["-m", "a=1,2", "b=x", "c=range(0,2)"]) == [["a=1", "b=x", "c=0"], ["a=1", "b=x", "c=1"],
                                                                   ["a=2", "b=x", "c=0"], ["a=2", "b=x", "c=1"]]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """EMA weights of the debug=tiny DMF network, which mode=eval debug=tiny loads."""
    from dmf.build import build_network

    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save({"ema": build_network(compose_config(["mode=eval", "debug=tiny"])).state_dict()}, path)
    return path


@pytest.mark.parametrize("typed, expected", [
    (["mode=eval", "debug=tiny", "ckpt={ckpt}", "eval.steps=[1]", "eval.num_samples=100,0"],
     ["eval.num_samples=0 must be a positive integer"]),
    (["debug=tiny", "pipeline.stages.flow.max_steps=2,0", "pipeline.stages.dmf.max_steps=2"],
     ["pipeline.stages.flow.max_steps=0 must be a positive integer"]),
    (["mode=train", "debug=tiny", "trainer.max_steps=1", "trainer.devices=1,3"], ["trainer.devices=3"]),
    (["paper=digits_ablation", "debug=tiny", "trainer.max_steps=1", "paper.row=dmf,typo", "paper.root={out}"],
     ["paper.row=typo is not a row of paper=digits_ablation"]),
    (["mode=eval", "debug=tiny", "ckpt={ckpt}", "eval.steps=[1]", "seed=0,1", "eval.out_dir={out}"],
     ["eval.out_dir={out}", "would write the same euler_1", "Fix: leave eval.out_dir unset"]),
], ids=["eval", "pipeline", "devices", "paper_row", "shared_out_dir"])
def test_a_mode_error_in_a_later_sweep_job_stops_the_sweep_before_its_first_job(typed, expected, tmp_path, tiny_ckpt):
    """Each job's mode checks (eval values, pipeline stages, paper rows, preflight's device count, a folder two jobs
    would write) ran only when the job started: job 0 trained or evaluated first."""
    out_dir, sweep_dir = tmp_path / "out", tmp_path / "sweep"
    typed = [t.format(ckpt=tiny_ckpt, out=out_dir) for t in typed]
    out = run_cli("-m", *typed, f"hydra.sweep.dir={sweep_dir}")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    message = out.stderr[out.stderr.index("error: sweep job `"):]
    for text in [*expected, "(nothing of the sweep has run)"]:
        assert text.format(out=out_dir) in message, message
    assert not sweep_dir.exists() and not out_dir.exists()


def test_a_slurm_sweep_is_not_queued_with_a_checkpoint_that_is_not_there(tmp_path, monkeypatch):
    """`-m hydra/launcher=slurm_h100 experiment=dmf_xl_256 ckpt=<typo> ...` called sbatch: each 8-GPU job would
    fail on the missing file once scheduled. Local paths are checked at submission; hf:// files are the job's."""
    from dmf.config import check_launch

    monkeypatch.setattr("dmf.config.launch.check_slurm_reachable", lambda: None)  # as on a login node

    sweep = ["-m", "hydra/launcher=slurm_h100", "experiment=dmf_xl_256", f"data.root={tmp_path}",
             "guidance.omega=0.4,0.6"]
    with pytest.raises(ConfigError, match=r"sweep job .*ckpt: .*sit.pt does not exist.*nothing of the sweep has run"):
        check_launch([*sweep, f"ckpt={tmp_path / 'sit.pt'}"], str(CONF))
    (tmp_path / "sit.pt").write_bytes(b"")
    check_launch([*sweep, f"ckpt={tmp_path / 'sit.pt'}"], str(CONF))
    check_launch([*sweep, "ckpt=hf://owner/repo/sit.pt"], str(CONF))  # fetched by the job, not at submission


@pytest.mark.parametrize("launcher, sinfo", [("slurm_cpu", None), ("slurm_cpu", "Could not establish a configuration "
                                             "source"), ("submitit_slurm", None)],
                         ids=["no_client", "no_cluster", "the_plugins_own_preset"])
def test_a_slurm_sweep_where_slurm_cannot_be_reached_is_one_line(launcher, sinfo, tmp_path):
    """Without a SLURM client (or with one that reaches no controller) submitit ended the sweep in a ~45-line
    traceback from sbatch, after the sweep's checks. Any preset that launches with SLURM is checked, whatever its
    name."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if sinfo is not None:
        for tool in ("sbatch", "sinfo"):
            (bin_dir / tool).write_text(f"#!/bin/sh\necho '{tool}: fatal: {sinfo}' >&2\nexit 1\n")
            (bin_dir / tool).chmod(0o755)
    out = run_cli("-m", f"hydra/launcher={launcher}", "experiment=digits_dmf", "seed=0,1",
                  f"hydra.sweep.dir={tmp_path / 'sweep'}", env={"PATH": str(bin_dir)})
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    expected = ("this machine has no SLURM client (sbatch, sinfo)" if sinfo is None else
                f"SLURM cannot be reached from here (sinfo: sinfo: fatal: {sinfo})")
    assert f"error: hydra/launcher: {expected}" in out.stderr, out.stderr
    assert "drop hydra/launcher" in out.stderr and not (tmp_path / "sweep").exists()


def test_a_launcher_without_m_is_refused_rather_than_running_here(tmp_path):
    """Hydra uses hydra/launcher for -m only: `python run.py hydra/launcher=slurm_h100 ...` started the 8-GPU job on
    the login node."""
    out = run_cli("hydra/launcher=slurm_cpu", "experiment=digits_dmf", f"hydra.run.dir={tmp_path / 'run'}")
    assert out.returncode == 2 and "hydra/launcher=slurm_cpu submits -m sweeps only" in out.stderr, out.stderr[-2000:]
    assert not (tmp_path / "run").exists()


def test_a_sampler_sweep_may_share_one_eval_out_dir(tiny_ckpt, tmp_path):
    """Jobs that write other <sampler>_<steps> folders of one eval.out_dir make one table there: not refused."""
    from dmf.config import check_launch

    check_launch(["-m", "mode=eval", "debug=tiny", f"ckpt={tiny_ckpt}", "eval.steps=[1]", "sampler=euler,restart",
                  f"eval.out_dir={tmp_path}"], str(CONF))
    with pytest.raises(ConfigError, match="would write the same euler_2"):
        check_launch(["-m", "mode=eval", "debug=tiny", f"ckpt={tiny_ckpt}", "eval.steps=[1,2],[2,4]",
                      f"eval.out_dir={tmp_path}"], str(CONF))


def test_a_path_with_equals_signs_gets_the_quoted_override_to_paste(tmp_path):
    """A sweep job's folder (.../guidance.omega=0.6,sampler=restart/...) passed back unquoted: Hydra alone says
    "mismatched input '='"; run.py names the key and prints the quoted form, which then works."""
    path = "multirun/x/guidance.omega=0.6,sampler=restart/last.ckpt"
    out = run_cli("experiment=digits_dmf", f"ckpt={path}", "--cfg", "job")
    assert out.returncode == 2 and f"ckpt=\"'{path}'\"" in out.stderr, out.stderr
    quoted = run_cli("experiment=digits_dmf", f"ckpt='{path}'", "--cfg", "job")
    assert quoted.returncode == 0 and f"ckpt: {path}" in quoted.stdout, quoted.stderr
    for fine in ("a=b\\=c", "a='x=y'", "a=${oc.env:HOME}", "+a={k: v}", "-m", "a=1,2"):
        assert command_line([fine]) == [fine]


def test_debug_tiny_names_its_scope_on_other_experiments():
    out = run_cli("experiment=dmf_xl_256", "debug=tiny", "hydra.run.dir=/tmp/dmf-cli-tiny")
    assert out.returncode == 2 and "debug=tiny is for the digits experiments (data=imagenet256 here)" in out.stderr


def test_debug_tiny_keeps_the_groups_typed_with_it():
    """debug=tiny is merged after the groups: a group it set a value of (attention: backend) lost to it, silently."""
    from omegaconf import OmegaConf

    for group, key in (("attention=sdpa", "model.attention"), ("sampler=restart", "sampler._target_"),
                       ("guidance=distill", "guidance._target_")):
        chosen = OmegaConf.select(compose_config(["experiment=digits_dmf", group]), key)
        assert OmegaConf.select(compose_config(["experiment=digits_dmf", "debug=tiny", group]), key) == chosen, group


def test_a_model_group_the_experiments_name_contradicts_is_refused():
    """experiment=digits_dmf model=mf built a DMFT: the experiment's model.name (set after the group) won, silently."""
    out = run_cli("experiment=digits_dmf", "model=mf", "mode=train", "hydra.run.dir=/tmp/dmf-cli-model-group")
    assert out.returncode == 2
    assert "model=mf but model.name=DMFT-T/2 (set by experiment=digits_dmf) would build a DMFT" in out.stderr
    assert "model=mf model.name=MF-T/2" in out.stderr
