"""Evaluation messages in one style: through `logging` (Hydra writes the console and run.log), from rank zero
only, and long loops report progress with a rate and an ETA."""
import logging
import time

from dmf.core.ranks import rank_and_world

log = logging.getLogger("dmf.eval")


def say(msg: str) -> None:
    if rank_and_world()[0] == 0:
        log.info(msg)


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class Progress:
    """`update(done)` logs '<label>: done/total <unit> (pct), rate/s, ETA' at most every `every_s` seconds
    (total None: a stream of unknown length, count and rate only). `scale` turns this process's count into the
    whole job's (world size: ranks share the work evenly)."""

    def __init__(self, label: str, total: int | None, unit: str = "images", every_s: float = 30.0, scale: int = 1,
                 emit=say, clock=time.monotonic):
        self.label, self.total, self.unit, self.every_s, self.scale = label, total, unit, every_s, scale
        self.emit, self.clock = emit, clock
        self.t0 = self.last = clock()

    def update(self, done: int) -> None:
        now = self.clock()
        if now - self.last < self.every_s or now <= self.t0:
            return
        self.last = now
        done_all = done * self.scale
        rate = done_all / (now - self.t0)
        if self.total is None:
            self.emit(f"{self.label}: {done_all} {self.unit}, {rate:.1f} {self.unit}/s")
            return
        eta = (self.total - done_all) / rate if rate > 0 else float("inf")
        pct = 100.0 * done_all / max(self.total, 1)
        self.emit(f"{self.label}: {done_all}/{self.total} {self.unit} ({pct:.0f}%), {rate:.1f} {self.unit}/s, "
                  f"ETA {duration(eta) if eta != float('inf') else '?'}")
