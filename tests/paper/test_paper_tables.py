"""Paper tables as configs: every row composes into a valid run, the launch runs rows and the collector puts
them beside the published numbers."""
import csv
import json
import re
from functools import partial
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dmf.config import validate
from dmf.core.errors import ConfigError
from dmf.paper.run import check_metrics, stage_overrides
from dmf.paper.spec import RESULT_FILE, paper_values, row_overrides, row_spec
from dmf.train.preflight import check_mandatory
from tests.helpers import CONF, compose_config, run_python

run_py = partial(run_python, "run.py", timeout=900)
TABLES = sorted(p.stem for p in (CONF / "paper").glob("*.yaml") if not p.stem.startswith("_"))


def test_the_issue_tables_exist_with_the_published_numbers():
    assert {"main", "l2_ablation", "dmf_depth", "guidance_grid", "time_grid", "digits_ablation"} <= set(TABLES)
    main = compose_config(["paper=main"]).paper
    assert paper_values(main.rows.dmf_xl_256) == {1: 2.16, 2: 1.64, 4: 1.51}
    assert paper_values(main.rows.dmf_xl_512) == {1: 2.12, 2: 1.75, 4: 1.68}
    l2 = compose_config(["paper=l2_ablation", "paper.inputs.sit_l2_repa=/x.pt"]).paper
    assert [tuple(paper_values(r).values()) for r in l2.rows.values()] == [
        (20.6, 18.1), (19.3, 17.3), (5.27, 4.09), (4.53, 3.58), (3.65, 2.63), (3.10, 2.51)]


@pytest.mark.parametrize("table", TABLES)
def test_every_row_is_a_valid_run_of_the_model_it_names(table):
    top = compose_config([f"paper={table}"])
    assert top.mode._target_ == "dmf.paper.run.run_row"
    inputs = {f"paper.inputs.{k}=/ckpts/{k}.pt" for k in (top.paper.get("inputs") or {})}
    paper = compose_config([f"paper={table}", *inputs]).paper
    for name, spec in paper.rows.items():
        overrides = row_overrides(paper, spec)
        cfg = compose_config(overrides)
        validate(cfg)
        with torch.device("meta"):
            net = instantiate(cfg.model)
        assert net.num_classes == cfg.data.num_classes, name
        if "MF-" in cfg.model.name:
            assert type(net).__name__ == "MeanFlowTransformer", name
        init = spec.get("init")
        assert not init or init in (paper.get("stages") or {}) or str(init).startswith("/ckpts/"), name
        if spec.get("train", False):  # what training asks before it starts: rows without init train from scratch
            check_mandatory(compose_config([*overrides, *([f"ckpt=/ckpts/{name}.pt"] if init else [])]))
    for overrides in (paper.get("stages") or {}).values():
        validate(compose_config(list(overrides)))


def test_rows_launch_as_one_sweep_job_each():
    from hydra import compose, initialize_config_dir

    from dmf.config import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["paper=l2_ablation"], return_hydra_config=True)
    assert cfg.hydra.sweeper.params["paper.row"] == "mf,dmf,mf_mg,dmf_mg,mf_mg_repa,dmf_mg_repa"
    assert cfg.hydra.sweep.dir == "paper_runs/l2_ablation"


def fake_row(root: Path, row: str, ours: dict):
    (root / row).mkdir(parents=True)
    (root / row / RESULT_FILE).write_text(json.dumps({
        "table": "main", "row": row, "label": row, "metric": "fid", "paper": {}, "ours": ours,
        "extra": {"fd_dinov2": {k: 50.0 for k in ours}}, "overrides": [], "commit": "abc1234", "date": "2026-11-27"}))


def test_collect_puts_ours_beside_the_paper_and_marks_missing_rows(tmp_path):
    cfg = compose_config(["mode=collect", "paper=main", f"paper.root={tmp_path}"])
    fake_row(tmp_path, "dmf_xl_256", {"1": 2.20, "2": 1.60})  # not scored at 4 NFE
    assert cfg.mode._target_ == "dmf.report.collect.collect"  # the one mode=collect, dispatching on paper=
    report = instantiate(cfg.mode)(cfg)
    rows = list(csv.DictReader(open(report["csv"])))
    assert [(r["row"], r["nfe"]) for r in rows][:3] == [("dmf_xl_256", "1"), ("dmf_xl_256", "2"), ("dmf_xl_256", "4")]
    first = rows[0]
    assert float(first["paper"]) == 2.16 and float(first["ours"]) == 2.20 and abs(float(first["difference"]) - 0.04) < 1e-9
    assert first["commit"] == "abc1234" and first["fd_dinov2"] == "50.0"
    assert all(r["ours"] == "missing" and r["commit"] == "" for r in rows if r["row"] == "dmf_xl_512")
    assert rows[2]["ours"] == "missing" and rows[2]["difference"] == ""  # a blank would read as a failed metric
    md = report["markdown"].read_text()
    assert "| dmf_xl_256 | DMF-XL/2+ 256x256 | 1 | 2.160 | 2.200 | +0.040 |" in md
    assert report["markdown"].name == "main.md" and report["plot"].exists()


@pytest.mark.slow
def test_digits_ablation_two_rows_launch_and_collect(tmp_path):
    """The make target's path in miniature: two rows (one from the REPA stage) launched with -m, then collected."""
    from dmf.digits.repa_encoder import train_token_net

    encoder = tmp_path / "encoder.pt"
    torch.save({"state_dict": train_token_net(epochs=1).state_dict(), "dim": 64}, encoder)
    tiny = ["trainer.max_steps=2", "model.hidden_size=32", "model.num_heads=2", "eval.num_samples=64",
            "data.global_batch_size=16", "callbacks.progress.refresh_rate=0", f"objective.encoder.weights={encoder}",
            f"paper.root={tmp_path / 'runs'}"]
    run_py("-m", "paper=digits_ablation", "paper.row=dmf,mf_mg_repa", *tiny, cwd=tmp_path, check=True)
    runs = tmp_path / "runs"
    assert sorted(p.name.split("-")[0] for p in (runs / "_stages").iterdir()) == ["flow", "flow_repa"]
    record = json.loads((runs / "mf_mg_repa" / RESULT_FILE).read_text())
    assert record["label"] == "MF-T/2 + model guidance + REPA init" and set(record["ours"]) == {"1", "2"}
    assert "_stages/flow_repa-" in record["init"]  # it started from the REPA stage
    run_py("mode=collect", "paper=digits_ablation", f"paper.root={runs}", cwd=tmp_path, check=True)
    rows = list(csv.DictReader(open(runs / "digits_ablation.csv")))
    done = {r["row"] for r in rows if r["ours"] != "missing"}
    assert done == {"dmf", "mf_mg_repa"} and len(rows) == 12
    assert all(float(r["ours"]) > 0 and 0 <= float(r["class_acc"]) <= 1 for r in rows if r["row"] in done)
    assert (runs / "digits_ablation.md").exists() and (runs / "digits_ablation_vs_nfe.png").exists()


@pytest.mark.slow
def test_debug_tiny_on_the_command_line_reaches_the_rows_and_their_stages(tmp_path):
    """debug=tiny is a config group of global package (no key of the config): it must reach every stage anyway."""
    out = run_py("-m", "paper=digits_ablation", "paper.row=dmf", "debug=tiny", "trainer.max_steps=2",
                 f"paper.root={tmp_path}", cwd=tmp_path, check=True)
    # the row's and its stage's commands, printed to paste: each key once (trainer.max_steps was there twice)
    printed = [line.split("python run.py ", 1)[1].split() for line in (out.stdout + out.stderr).splitlines()
               if "] paper: python run.py " in line or "stage flow: python run.py " in line]
    assert len(printed) == 2 and all(len({o.split("=", 1)[0] for o in c}) == len(c) for c in printed), printed
    (flow,) = (tmp_path / "_stages").iterdir()
    for run in (flow, tmp_path / "dmf"):
        cfg = OmegaConf.load(run / "config_history" / "attempt_001" / "config.yaml")
        assert (cfg.model.hidden_size, cfg.trainer.max_steps, cfg.trainer.log_every_n_steps) == (32, 2, 1), run
    assert [r["num_samples"] for r in csv.DictReader(open(tmp_path / "dmf" / "eval" / "results.csv"))] == ["100"] * 2


@pytest.mark.slow
def test_a_finished_row_is_reused_only_for_the_same_training(tmp_path):
    """Relaunching a table with other training keys must not report the old row's weights as the new setting."""
    tiny = ["paper.row=dmf", "model.hidden_size=32", "model.num_heads=2", "eval.num_samples=32",
            "data.global_batch_size=16", "callbacks.progress.refresh_rate=0", f"paper.root={tmp_path / 'runs'}"]

    def launch(*extra):
        return run_py("-m", "paper=digits_ablation", *tiny, *extra, cwd=tmp_path)

    first = launch("trainer.max_steps=2")
    assert first.returncode == 0, first.stderr[-3000:]
    record = tmp_path / "runs" / "dmf" / RESULT_FILE
    before = record.read_bytes()
    # the same setting: the finished row is reused; scored again at one NFE, its record keeps the other
    again = launch("trainer.max_steps=2", "paper.nfe=[1]")
    assert again.returncode == 0 and "reusing the finished run" in again.stdout, again.stderr[-3000:]
    assert json.loads(record.read_text())["ours"] == json.loads(before)["ours"]
    assert set(json.loads(before)["ours"]) == {"1", "2"}
    changed = launch("trainer.max_steps=3")
    assert changed.returncode == 2 and "Traceback" not in changed.stderr, changed.stderr[-3000:]
    assert "trainer.max_steps: 2 -> 3" in changed.stderr and "paper.root=" in changed.stderr, changed.stderr
    assert len(list((tmp_path / "runs" / "_stages").iterdir())) == 1  # refused before training a new flow stage
    assert json.loads(record.read_text())["ours"] == json.loads(before)["ours"]


def test_a_key_each_row_sets_is_refused_when_typed_for_the_table(tmp_path):
    """Typed after the row's own values, eval.steps=[4] would leave `ours` empty and ckpt= would score another
    network under the row's label: refused before anything trains (through run.py once, then each key)."""
    out = run_py("-m", "paper=digits_ablation", "paper.row=dmf", "debug=tiny", "eval.steps=[4]",
                 f"paper.root={tmp_path}", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert "error: eval.steps=[4]: the rows are scored at the table's NFEs: paper.nfe=" in out.stderr, out.stderr
    assert not (tmp_path / "_stages").exists()
    for typed, fix in (("ckpt=mine.ckpt", "paper.inputs."), ("resume=x", "resumes its own"),
                       ("sampler.steps=4", "paper.nfe="), ("eval.out_dir=x", "paper.root=")):
        with pytest.raises(ConfigError, match=re.escape(f"{typed}: ") + ".*" + re.escape(fix)):
            stage_overrides(["paper=digits_ablation", typed])
    assert stage_overrides(["paper=digits_ablation", "paper.row=dmf", "debug=tiny", "seed=1"]) == ["debug=tiny", "seed=1"]


@pytest.mark.parametrize("typed, error", [
    ("paper.nfe=[0]", "error: paper.nfe=[0] must be a non-empty list of positive integers"),
    ("eval.num_samples=0", "error: eval.num_samples=0 must be a positive integer"),
])
def test_a_bad_evaluation_value_stops_a_row_before_it_trains(tmp_path, typed, error):
    """Checked only when the row's scoring began, after its stage and the row trained; paper.nfe was named eval.steps."""
    out = run_py("-m", "paper=digits_ablation", "paper.row=dmf", "debug=tiny", "trainer.max_steps=1", typed,
                 f"paper.root={tmp_path}", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert error in out.stderr, out.stderr[-3000:]
    assert not (tmp_path / "_stages").exists() and not list(tmp_path.rglob("*.ckpt"))


def test_a_table_metric_the_rows_evaluation_does_not_compute_stops_before_training():
    paper = compose_config(["paper=digits_ablation", "paper.row=dmf", "paper.metric=fid"]).paper
    with pytest.raises(ConfigError, match=re.escape("paper.metric / paper.extra_metrics name ['fid']")):
        check_metrics(paper, compose_config(row_overrides(paper, paper.rows.dmf)))
    check_metrics(compose_config(["paper=digits_ablation", "paper.row=dmf"]).paper,
                  compose_config(row_overrides(paper, paper.rows.dmf)))


def test_collect_refuses_to_label_a_rows_values_with_another_metric(tmp_path):
    fake_row(tmp_path, "dmf_xl_256", {"1": 2.20})
    cfg = compose_config(["mode=collect", "paper=main", f"paper.root={tmp_path}", "paper.metric=fd_dinov2"])
    with pytest.raises(ConfigError, match="scored in fid .* collect with paper.metric=fid"):
        instantiate(cfg.mode)(cfg)
    cfg = compose_config(["mode=collect", "paper=main", f"paper.root={tmp_path}", "collect.metric=fd_dinov2"])
    with pytest.raises(ConfigError, match="collect.metric=fd_dinov2 is for sweeps"):
        instantiate(cfg.mode)(cfg)
    cfg = compose_config(["mode=collect", "paper=main", f"paper.root={tmp_path / 'typo'}"])
    with pytest.raises(ConfigError, match="typo does not exist: no row of paper=main has run there"):
        instantiate(cfg.mode)(cfg)
    assert not (tmp_path / "typo").exists()


def test_a_misspelt_row_option_is_refused():
    """A row is read key by key: a misspelt `init` would train the row from scratch under the row's label."""
    paper = compose_config(["paper=digits_ablation", "+paper.rows.dmf_mg.intt=flow"]).paper
    with pytest.raises(ValueError, match=r"paper.rows.dmf_mg.intt is not an option of paper.rows.dmf_mg \(did you "
                                         r"mean paper.rows.dmf_mg.init\?\)"):
        row_spec(paper, "dmf_mg")
    row_spec(paper, "dmf")


def test_a_row_the_table_lacks_is_named_with_the_rows():
    paper = compose_config(["paper=digits_ablation"]).paper
    with pytest.raises(ConfigError, match="paper.row=nope is not a row of paper=digits_ablation; rows: mf, dmf,"):
        row_spec(paper, "nope")


def test_a_rows_record_takes_only_results_made_as_this_launchs(tmp_path):
    """A relaunch at fewer NFE keeps the row's other step counts, but not those an earlier launch made with other
    settings (here another eval.num_samples, left in the folder after eval.overwrite=true redid NFE 1)."""
    from dmf.paper.run import same_evaluation

    def result(steps, num_samples):
        folder = tmp_path / f"euler_{steps}"
        folder.mkdir()
        fingerprint = {"num_samples": num_samples, "sampler": {"name": "euler", "steps": steps}}
        (folder / "result.json").write_text(json.dumps({"steps": steps, "metrics": {"fd": 1.0},
                                                        "fingerprint": fingerprint}))

    result(1, 100), result(2, 100), result(4, 50)
    assert [r["steps"] for r in same_evaluation(tmp_path, [1])] == [1, 2]
    assert [r["steps"] for r in same_evaluation(tmp_path, [4])] == [4]
