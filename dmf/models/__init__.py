"""Networks: SiT, DMFT, the MeanFlow baseline, attention backends, size registry, checkpoint loading."""
from dmf.models.checkpoint import SIT_TO_DMFT, CheckpointMismatch, load_pretrained, load_weights
from dmf.models.dmft import DMFT
from dmf.models.meanflow import MeanFlowTransformer
from dmf.models.registry import SIZES, build_model, parse_name
from dmf.models.sit import SiT

__all__ = ["DMFT", "MeanFlowTransformer", "SiT", "SIZES", "SIT_TO_DMFT", "CheckpointMismatch", "build_model", "load_pretrained", "load_weights", "parse_name"]
