"""Training objectives: paths, time proposals, target guidance, FM(+REPA) and DMF losses, weighting."""
from dmf.objectives.dmf_loss import DMFLoss
from dmf.objectives.flow_matching import FlowMatchingLoss, repa_loss
from dmf.objectives.guidance import DistillGuidance, ModelGuidance, NoGuidance
from dmf.core.paths import CosinePath, LinearPath, get_path
from dmf.objectives.time import LogitNormalTime
from dmf.objectives.weighting import adaptive_loss

__all__ = [
    "DMFLoss", "FlowMatchingLoss", "repa_loss", "DistillGuidance", "ModelGuidance", "NoGuidance",
    "CosinePath", "LinearPath", "get_path", "LogitNormalTime", "adaptive_loss",
]
