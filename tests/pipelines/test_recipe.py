"""The digits default as a recipe: command-line overrides reach the stages that accept them, stages are keyed by
their config and parent checkpoint, the table is mode=eval's, and a `-m` sweep gives one distinct table per job
that mode=collect gathers. The slow tests share one real sweep through run.py (debug=tiny)."""
import csv
import json
from functools import partial
from pathlib import Path

import pytest
from hydra import initialize_config_dir

from dmf.config import register_resolvers
from dmf.core.errors import ConfigError, MissingFileError
from dmf.pipelines.recipe import (accepted, check_options, results_table, parent_overrides, run, short_hash,
                                  training_identity)
from tests.helpers import CONF, compose_config, run_python

register_resolvers()  # stages composed inside initialize_config_dir resolve ${dmf.launcher:...} as they validate
OMEGAS, SAMPLERS = ("0", "0.6"), ("euler", "restart")


run_cli = partial(run_python, "run.py", check=True, timeout=600)


def job_dir(root: Path, omega: str, sampler: str) -> Path:
    return root / f"debug=tiny,guidance.omega={omega},sampler={sampler}"


def rows(job: Path) -> dict[tuple, dict]:
    return {(r["stage"], r["sampler"], r["steps"]): r for r in json.loads((job / "results.json").read_text())["rows"]}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    run_cli("-m", "debug=tiny", f"guidance.omega={','.join(OMEGAS)}", f"sampler={','.join(SAMPLERS)}",
            f"hydra.sweep.dir={root}")
    return root


# ---- fast: routing rules and tables, through the real config tree -------------------------------------------

def test_a_stage_takes_only_the_overrides_its_config_accepts():
    given = ["debug=tiny", "seed=3", "guidance.omega=0.6", "sampler=restart", "model.dmf_depth=3",
             "time.P_mean_r=-0.2"]
    with initialize_config_dir(str(CONF), version_base="1.3"):
        flow = accepted("digits_flow", given)
        dmf = accepted("digits_dmf", given)
    # guidance=none has no omega, a SiT has no dmf_depth, a flow model is not sampled with a flow-map sampler, and
    # objective=fm composes with the (t, r) proposal's keys but does not read them (they would retrain the stage)
    assert flow == ["debug=tiny", "seed=3"]
    assert dmf == given


def test_a_stage_takes_overrides_that_fit_only_together_in_any_order():
    """model.depth=3 alone fails the DMF stage (its dmf_depth 4 >= 3): tried in typed order, it was dropped for that
    stage while the flow stage trained at depth 3, and the DMF stage then failed to load it."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        assert accepted("digits_dmf", ["model.depth=3", "model.dmf_depth=2"]) == ["model.depth=3", "model.dmf_depth=2"]


def test_stages_whose_networks_would_not_fit_stop_before_the_first_trains(tmp_path):
    """model.name=DMFT-T/4 reaches only the DMF stage (the flow stage's SiT refuses a DMFT name): the flow stage
    trained at patch 2, then the DMF stage could not load it."""
    cfg = compose_config([f"run_dir={tmp_path}", "debug=tiny"])
    cfg.pipeline.overrides = ["debug=tiny", "model.name=DMFT-T/4"]
    with initialize_config_dir(str(CONF), version_base="1.3"), pytest.raises(
            ConfigError, match=r"stage dmf cannot start from stage flow: .*patch_size=2 \(config builds 4"):
        run(cfg)
    assert not any(tmp_path.iterdir())


def test_a_pipeline_of_a_one_stage_experiment_is_one_line_not_a_traceback():
    for debug in ([], ["debug=tiny"]):  # (the preset adds a partial pipeline node)
        with pytest.raises(ConfigError, match="mode=pipeline runs a recipe experiment .* trains with mode=train"):
            run(compose_config(["experiment=digits_dmf", "mode=pipeline", "run_dir=unused", *debug]))


def test_evaluation_keys_reach_only_the_stages_a_row_evaluates():
    """mode=train reads no sampler or eval key without evaluating callbacks: a stage takes them for its rows."""
    given = ["sampler=restart", "eval.num_samples=50", "guidance.omega=0.6"]
    with initialize_config_dir(str(CONF), version_base="1.3"):
        assert accepted("digits_dmf", given) == given
        assert accepted("digits_dmf", given, evaluated=False) == ["guidance.omega=0.6"]
        assert accepted("digits_flow", given) == ["eval.num_samples=50"]


def test_the_recipe_drops_its_own_keys_from_the_command_line(tmp_path):
    cfg = compose_config([f"run_dir={tmp_path}"])
    cfg.pipeline.overrides = ["experiment=digits", "mode=pipeline", "hydra/launcher=basic", "hydra.run.dir=x",
                              "run_dir=x", "pipeline.stages.flow.max_steps=3", "+guidance.omega=0.6"]
    assert parent_overrides(cfg) == ["+guidance.omega=0.6"]


@pytest.mark.parametrize("override, fix", [("ckpt=FLOW", "pipeline.stages.flow.ckpt="),
                                           ("resume=FLOW", "resumes by itself"),
                                           ("eval.steps=[8]", "pipeline.evaluate")])
def test_a_stage_key_typed_for_the_whole_pipeline_is_refused_not_dropped(tmp_path, override, fix):
    """`python run.py ckpt=<flow ckpt>` must not train both stages from scratch as if it had not been typed, nor
    `eval.steps=[8]` score the rows at their own step counts."""
    override = override.replace("FLOW", str(tmp_path / "flow.ckpt"))
    out = run_python("run.py", "debug=tiny", override, f"hydra.run.dir={tmp_path / 'run'}")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert f"error: {override}:" in out.stderr and fix in out.stderr, out.stderr
    assert not (tmp_path / "run").exists()  # nothing trained, and the refused launch's folder is gone


@pytest.mark.parametrize("typed, error", [
    ("guidance=distill", "error: stage dmf: missing required values: guidance.teacher.ckpt"),  # a teacher checkpoint
    ("attention=sdpa", "error: stage dmf: attention.backend=sdpa has no forward-mode AD"),  # the flow stage has none
])
def test_a_later_stage_that_cannot_train_stops_before_the_first_stage_trains(tmp_path, typed, error):
    """The flow stage must not train first and then the DMF stage fail."""
    out = run_python("run.py", "debug=tiny", typed, f"hydra.run.dir={tmp_path}")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert error in " ".join(out.stderr.split()), out.stderr[-3000:]
    assert not any(p.name.startswith("flow-") for p in tmp_path.iterdir())  # nothing trained


@pytest.mark.parametrize("typed, error", [
    ("eval.num_samples=0", "error: scoring stage flow (pipeline.evaluate[0]): eval.num_samples=0 must be a positive"),
    ("pipeline.evaluate=[{stage: dmf, steps: [0]}]", "error: pipeline.evaluate[0].steps=[0] must be a non-empty list"),
])
def test_a_bad_evaluation_value_stops_before_the_first_stage_trains(tmp_path, typed, error):
    """Checked only when scoring began: both stages trained first, and the row's steps were named eval.steps, a key
    the pipeline refuses when typed."""
    out = run_python("run.py", "debug=tiny", "trainer.max_steps=1", typed, f"hydra.run.dir={tmp_path}")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert error in out.stderr, out.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hydra", "run.log"]  # nothing trained


def test_an_override_that_no_stage_accepts_stops_before_training(tmp_path):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        from hydra import compose

        cfg = compose("config", [f"run_dir={tmp_path}"])
        cfg.pipeline.overrides = ["sampler.gamma=0.5"]
        with pytest.raises(ValueError, match=r"overrides \['sampler.gamma=0.5'\] apply to no stage"):
            run(cfg)
    assert not any(tmp_path.iterdir())


def test_stage_key_changes_with_config_and_parent_checkpoint_only(tmp_path):
    a = compose_config(["experiment=digits_dmf", f"run_dir={tmp_path}/a"])
    b = compose_config(["experiment=digits_dmf", f"run_dir={tmp_path}/b", "sampler=restart", "eval.num_samples=7"])
    c = compose_config(["experiment=digits_dmf", f"run_dir={tmp_path}/a", "guidance.omega=0.5"])
    key = lambda cfg, sha="x": short_hash(training_identity(cfg, sha))  # noqa: E731
    assert key(a) == key(b)  # run dir and evaluation settings do not change the weights
    assert key(a) != key(c) and key(a) != key(a, sha="y")


def test_results_table_formats_accuracy_as_percent():
    table = results_table([{"stage": "dmf", "sampler": "euler", "steps": 1, "fd_digits": 2.256, "class_acc": 0.984,
                             "grid": "", "ckpt": ""}])
    assert table.splitlines()[0] == "| stage | sampler | steps (NFE) | fd_digits | class_acc |"
    assert table.splitlines()[-1] == "| dmf | euler | 1 | 2.26 | 98.4 % |"


# ---- slow: one real sweep ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_sweep_gives_one_distinct_table_per_job_with_overrides_routed_to_stages(sweep):
    jobs = {(o, s): job_dir(sweep, o, s) for o in OMEGAS for s in SAMPLERS}
    assert all(j.is_dir() for j in jobs.values()), sorted(p.name for p in sweep.iterdir())
    tables = {k: rows(j) for k, j in jobs.items()}
    used = {k: json.loads((j / "results.json").read_text())["stages"] for k, j in jobs.items()}
    for (omega, sampler), table in tables.items():
        assert sorted(table) == sorted([("flow", "flow_euler", 1), ("dmf", sampler, 1), ("dmf", sampler, 2)])
        stages = {name: json.loads((Path(d) / "stage.json").read_text()) for name, d in used[omega, sampler].items()}
        assert f"guidance.omega={omega}" in stages["dmf"]["overrides"]
        assert not any(o.startswith(("guidance", "sampler")) for o in stages["flow"]["overrides"])
    # the jobs share the sweep's stage store: the flow stage trained once, the DMF stage once per omega (the
    # sampler is not training); the DMF results differ in every job
    store = sweep / "stages"
    assert {Path(u[s]).parent for u in used.values() for s in u} == {store}
    assert len(list(store.glob("flow-*/stage.json"))) == 1 and len({u["flow"] for u in used.values()}) == 1
    assert len(list(store.glob("dmf-*/stage.json"))) == len(OMEGAS)
    dmf_fds = [t["dmf", s, 2]["fd_digits"] for (o, s), t in tables.items()]
    assert len(set(dmf_fds)) == len(dmf_fds), dmf_fds
    for s in SAMPLERS:  # omega alone changes the DMF stage's result
        assert tables["0", s]["dmf", s, 1]["fd_digits"] != tables["0.6", s]["dmf", s, 1]["fd_digits"]


@pytest.mark.slow
def test_collect_gathers_the_sweep(sweep):
    run_cli("mode=collect", f"dir={sweep}", timeout=300)
    with open(sweep / "sweep.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 * 3
    assert {"guidance.omega", "sampler", "result:sampler", "stage", "steps", "fd_digits", "class_acc",
            "dmf:train/loss", "flow:train/loss"} <= set(table[0])
    for omega in OMEGAS:
        for sampler in SAMPLERS:
            mine = [r for r in table if r["guidance.omega"] == omega and r["sampler"] == sampler]
            expected = rows(job_dir(sweep, omega, sampler))
            assert {(r["stage"], r["result:sampler"], int(r["steps"])): float(r["fd_digits"]) for r in mine} == \
                pytest.approx({k: v["fd_digits"] for k, v in expected.items()})
    assert (sweep / "sweep.md").exists()
    plots = sweep / "sweep_fd_digits_vs_guidance.omega.png", sweep / "sweep_fd_digits_vs_sampler.png"
    assert plots[0].stat().st_size > 0 and plots[1].exists()


@pytest.mark.slow
def test_pipeline_table_equals_mode_eval_on_the_same_checkpoint(sweep, tmp_path):
    job = job_dir(sweep, "0.6", "restart")
    row = rows(job)["dmf", "restart", 2]
    out = tmp_path / "eval"
    run_cli("mode=eval", "eval=digits", "debug=tiny", "sampler=restart", f"ckpt='{row['ckpt']}'", "eval.steps=[2]",
            f"eval.out_dir={out}", f"hydra.run.dir={tmp_path / 'hydra'}", timeout=300)
    result = json.loads((out / "restart_2" / "result.json").read_text())
    assert result["metrics"]["fd_digits"] == pytest.approx(row["fd_digits"], rel=1e-9)
    assert result["metrics"]["class_acc"] == row["class_acc"]


@pytest.mark.slow
def test_rerun_with_other_flow_inputs_redoes_both_stages_and_keeps_the_old_ones(sweep):
    job = job_dir(sweep, "0", "euler")
    store = sweep / "stages"
    before = {p.name for p in store.glob("*-*") if (p / "stage.json").exists()}
    args = ["debug=tiny", "guidance.omega=0", "sampler=euler", "pipeline.stages.flow.max_steps=12",
            f"pipeline.stage_store='{store}'", f"hydra.run.dir='{job}'"]
    run_cli(*args)
    after = {p.name for p in store.glob("*-*") if (p / "stage.json").exists()}
    assert before < after and len(after - before) == 2  # a new flow stage and a new DMF stage
    stages = json.loads((job / "results.json").read_text())["stages"]
    assert {Path(d).name for d in stages.values()} == after - before
    assert all((store / name / "checkpoints" / "last.ckpt").exists() for name in before)
    again = run_cli(*args)  # same inputs: both stages are reused, nothing new is trained
    assert (again.stdout + again.stderr).count("finished earlier with the same config and parent") == 2
    assert {p.name for p in store.glob("*-*") if (p / "stage.json").exists()} == after
    # the new flow stage trained further by hand: its folder's key no longer says what its weights are
    from dmf.train.entry import train

    (flow,) = [store / n for n in after - before if n.startswith("flow-")]
    recorded = json.loads((flow / "stage.json").read_text())
    train(compose_config([f"experiment={recorded['experiment']}", *recorded["overrides"], f"run_dir={flow}",
                          "trainer.max_steps=13"]))
    refused = run_cli(*args, check=False)
    assert refused.returncode == 2 and "trainer.max_steps: 13 -> 12" in refused.stderr, refused.stderr[-2000:]
    assert f"pipeline.stages.flow.ckpt={flow / 'checkpoints' / 'last.ckpt'}" in refused.stderr


@pytest.mark.slow
def test_the_embedded_default_on_two_processes_and_its_rerun_with_the_flow_stage_reused(tmp_path):
    """`python run.py trainer.devices=2`: Lightning starts rank 1, which reruns the pipeline beside rank 0. Rank 0
    holds each stage's lock for both (each rank taking it itself deadlocked: the holder waited in DDP for the other).
    The rerun with a key only the DMF stage takes reuses the flow stage, which rank 0 had left before starting
    rank 1, and trains DMF on two processes again."""
    common = ["debug=tiny", "trainer.devices=2", "trainer.accelerator=cpu", f"hydra.run.dir={tmp_path / 'run'}"]
    first = run_python("run.py", *common, check=True, timeout=240)
    assert first.stdout.count("global batch 16 = 2 device(s) x 8 per device") == 2  # flow, then DMF
    assert first.stdout.count("[dmf] results:") == 1  # rank 0 writes and prints the table
    second = run_python("run.py", *common, "guidance.omega=0.5", check=True, timeout=240)
    assert second.stdout.count("global batch 16 = 2 device(s) x 8 per device") == 1
    assert "stage flow: finished earlier with the same config and parent" in second.stdout + second.stderr
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    assert [(r["stage"], r["steps"]) for r in rows] == [("flow", 1), ("dmf", 1), ("dmf", 2)]


def test_a_misspelt_stage_or_row_option_is_refused(tmp_path):
    """pipeline.stages.<stage> and pipeline.evaluate rows are read key by key: a misspelt init_from would train the
    DMF stage from scratch."""
    cfg = compose_config([f"run_dir={tmp_path}", "+pipeline.stages.dmf.init_frm=flow"])
    with pytest.raises(ConfigError, match="pipeline.stages.dmf.init_frm is not an option"):
        check_options(cfg.pipeline)
    cfg = compose_config([f"run_dir={tmp_path}", "pipeline.evaluate=[{stage: dmf, step: [1]}]"])
    with pytest.raises(ConfigError, match=r"pipeline.evaluate\[0\].step is not an option"):
        check_options(cfg.pipeline)
    check_options(compose_config([f"run_dir={tmp_path}"]).pipeline)
    # a stage's own values, before the first stage trains
    cfg = compose_config([f"run_dir={tmp_path}", "pipeline.stages.flow.max_steps=abc"])
    with pytest.raises(ConfigError, match="pipeline.stages.flow.max_steps='abc' must be a positive integer"):
        check_options(cfg.pipeline)
    cfg = compose_config([f"run_dir={tmp_path}", f"pipeline.stages.dmf.ckpt={tmp_path / 'missing.ckpt'}"])
    with pytest.raises(MissingFileError, match="pipeline.stages.dmf.ckpt: .*missing.ckpt does not exist"):
        check_options(cfg.pipeline)
