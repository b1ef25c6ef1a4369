"""A Lightning callback for benchmarks through run.py: the steady-state throughput of a real training run.

    python run.py ... '+callbacks.step_timer={_target_: bench.step_timer.StepTimer, warmup: 20, out: t.json}'

Times the wall clock between consecutive training-batch starts (synchronised), so data loading, the step, EMA,
logging and checkpointing are all inside; the first `warmup` intervals (compilation, autotuning) are dropped.
"""
import json
import statistics
import time

import lightning as L
import torch


class StepTimer(L.Callback):
    def __init__(self, warmup: int = 20, out: str | None = None):
        self.warmup, self.out = int(warmup), out
        self.last, self.times, self.batch = None, [], 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        now = time.perf_counter()
        if self.last is not None:
            self.times.append(now - self.last)
        self.last, self.batch = now, len(batch[1])

    def on_train_end(self, trainer, pl_module):
        steady = self.times[self.warmup:]
        if not steady:
            print(f"[dmf bench] only {len(self.times)} steps timed: raise trainer.max_steps above warmup={self.warmup}")
            return
        med = statistics.median(steady)
        world = trainer.world_size
        result = {"steps_timed": len(steady), "median_step_s": med, "img_s": self.batch * world / med,
                  "per_device_batch": self.batch, "world_size": world,
                  "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
                  "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
        print(f"[dmf bench] run.py steady state over {len(steady)} steps: {med:.3f} s/step, "
              f"{result['img_s']:.1f} img/s, peak {result['peak_gib'] or float('nan'):.1f} GiB", flush=True)
        if self.out and trainer.is_global_zero:
            with open(self.out, "w") as f:
                json.dump(result, f, indent=1)
