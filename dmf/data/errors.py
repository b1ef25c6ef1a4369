"""Bad data: one error type that names the file, and the raise-or-skip policy (`data.on_error`)."""
import logging

import torch

log = logging.getLogger(__name__)

POLICIES = ("raise", "skip")


class DataError(RuntimeError):
    """A corrupt, truncated, mislabelled or misshapen sample; the message names the file."""


def check_policy(on_error: str) -> str:
    if on_error not in POLICIES:
        raise ValueError(f"on_error={on_error!r}: expected one of {POLICIES} (set data.on_error)")
    return on_error


class ErrorPolicy:
    """`raise`: re-raise the DataError. `skip`: count it and log it, so a skip is never silent.

    Each bad item counts once: the same error met again (a resampled shard drawn again, a bad file fetched
    again next epoch) is skipped without counting or logging it again. Each DataLoader worker holds its own
    copy, so counts are per worker, and the log line names the worker. Logging is throttled to the first 10
    skips and then powers of two, to keep a badly broken dataset from flooding the logs while still
    reporting the running count.
    """

    def __init__(self, on_error: str = "raise", where: str = "data"):
        self.on_error = check_policy(on_error)
        self.where = where
        self.skipped = 0
        self._seen: set[str] = set()

    def __call__(self, err: Exception) -> None:
        if self.on_error == "raise":
            raise err
        if str(err) in self._seen:
            return
        self._seen.add(str(err))
        self.skipped += 1
        n = self.skipped
        if n <= 10 or (n & (n - 1)) == 0:
            info = torch.utils.data.get_worker_info()
            who = "main process" if info is None else f"DataLoader worker {info.id}"
            log.warning("%s (%s): skipped bad sample #%d (on_error=skip): %s", self.where, who, n, err)


def no_images(where: str, found: str) -> str:
    """The one message for latent data asked for images it does not hold (REPA pretraining)."""
    return (f"{where}: {found}, but the run needs the raw images beside the latents (data.datamodule.images=true, "
            f"which objective.repa_weight > 0 sets: REPA aligns with an encoder of the images). This dataset was "
            f"preprocessed without them: run `python run.py mode=preprocess data=<this data config> "
            f"preprocess.input=<the image folder> preprocess.images=true` into a new preprocess.out (docs/data.md), "
            f"or set objective.repa_weight=0")
