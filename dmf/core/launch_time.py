"""The time stamp in a run's or a sweep's folder name (hydra.run.dir, hydra.sweep.dir), one per launch. Under
torchrun every rank runs Hydra and would stamp its own `now`: ranks that start on either side of a second wrote
their records to folders of their own. Rank 0's time reaches the others through the store torchrun's agent
already serves."""
import functools
import os
from datetime import datetime, timedelta

from dmf.core.ranks import launch_ranks

KEY = "dmf/launch_time/"
WAIT = timedelta(minutes=10)  # ranks > 0 wait this long for rank 0 to start (a slow node's imports, a busy disk)


@functools.cache  # one stamp per process, however often Hydra resolves the folder
def launch_time(pattern: str) -> str:
    now = datetime.now().strftime(pattern)
    ranks = launch_ranks()
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or ranks is None or ranks[1] == 1:
        return now
    from torch.distributed import TCPStore

    store = TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False, timeout=WAIT)
    if ranks[0] == 0:
        # compare_set keeps a stamp already there: ranks restarted by the agent go on in their folder
        return store.compare_set(KEY + pattern, "", now).decode()
    return store.get(KEY + pattern).decode()
