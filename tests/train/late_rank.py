"""run.py as torchrun starts it, with every rank but 0 starting 1.5 s late (a slow node): the ranks' clocks then
read different seconds when Hydra names the run's folder."""
import os
import runpy
import sys
import time
from pathlib import Path

if os.environ.get("RANK", "0") != "0":
    time.sleep(1.5)
run_py = str(Path(__file__).parents[2] / "run.py")
sys.argv[0] = run_py
runpy.run_path(run_py, run_name="__main__")
