"""Whether this process may download: the one switch every loader of weights and statistics reads."""
import os

OFFLINE_VARIABLES = ("DMF_OFFLINE", "HF_HUB_OFFLINE")


def offline_variable() -> str | None:
    """The environment variable that turns downloads off (read at call time: huggingface_hub reads its own
    only once, at import), or None when downloads are allowed."""
    for name in OFFLINE_VARIABLES:
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return name
    return None


def downloads_off() -> bool:
    return offline_variable() is not None
