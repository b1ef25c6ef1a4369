"""Networks: SiT, DMFT, the MeanFlow baseline, attention backends, size registry, checkpoint loading."""
from dmf.models.checkpoint import (SIT_TO_DMFT, CheckpointError, CheckpointMismatch, describe_load, load_pretrained,
                                   load_weights, safe_load)
from dmf.models.dmft import DMFT
from dmf.models.meanflow import MeanFlowTransformer
from dmf.models.registry import SIZES, build_model, parse_name
from dmf.models.sit import SiT

__all__ = ["DMFT", "MeanFlowTransformer", "SiT", "SIZES", "SIT_TO_DMFT", "CheckpointError", "CheckpointMismatch", "build_model", "describe_load",
           "load_pretrained", "load_weights", "parse_name", "safe_load"]
