"""One CSV row per step across resumes. A resumed run restarts at its checkpoint's step S, so the rows an earlier
attempt logged for steps >= S (after its last checkpoint) describe updates that were thrown away and are now
logged again. They move from that version's metrics.csv to metrics.superseded.csv beside it (kept, not lost)."""
import csv
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only

from dmf.core.files import atomic_path


def move_superseded_rows(metrics_csv: Path, from_step: int) -> int:
    """Move rows with step >= from_step out of metrics_csv; returns how many moved."""
    with open(metrics_csv, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames or [], list(reader)
    if "step" not in fields:
        return 0
    late = [bool(r["step"]) and int(float(r["step"])) >= from_step for r in rows]
    keep = [r for r, x in zip(rows, late) if not x]
    gone = [r for r, x in zip(rows, late) if x]
    if not gone:
        return 0
    aside = metrics_csv.with_name("metrics.superseded.csv")
    new_file = not aside.exists()
    with open(aside, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        if new_file:
            w.writeheader()
        w.writerows(gone)
    with atomic_path(metrics_csv) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(keep)
    return len(gone)


class SupersededLogRows(L.Callback):
    @rank_zero_only
    def on_train_start(self, trainer, pl_module):
        step = trainer.global_step  # 0: a start in a run dir whose earlier attempt logged rows but left no checkpoint
        for logger in trainer.loggers:
            if not isinstance(logger, CSVLogger):
                continue
            # this attempt has logged nothing yet: every row at or past `step` is an earlier attempt's
            for metrics_csv in sorted(Path(logger.root_dir).glob("version_*/metrics.csv")):
                n = move_superseded_rows(metrics_csv, step)
                if n:
                    print(f"[dmf] started at step {step}: moved {n} rows of {metrics_csv} that an earlier attempt "
                          f"logged from that step on to metrics.superseded.csv")
