"""Networks: SiT, DMFT, attention backends, size registry, checkpoint loading."""
from dmf.models.checkpoint import (SIT_TO_DMFT, CheckpointError, CheckpointMismatch, load_pretrained, load_weights,
                                   safe_load)
from dmf.models.dmft import DMFT
from dmf.models.registry import SIZES, build_model, parse_name
from dmf.models.sit import SiT

__all__ = ["DMFT", "SiT", "SIZES", "SIT_TO_DMFT", "CheckpointError", "CheckpointMismatch", "safe_load", "build_model", "load_pretrained", "load_weights", "parse_name"]
