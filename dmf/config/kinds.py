"""What a composed config's objective and guidance are, read from the class its `_target_` names: the rules that
depend on them (which checks, which strategies and kernels can train them) ask here, not by matching text."""
from omegaconf import DictConfig

OBJECTIVES = {"DMFLoss": "dmf", "FlowMatchingLoss": "fm"}
GUIDANCES = {"NoGuidance": "none", "ModelGuidance": "mg", "DistillGuidance": "distill"}


def _kind(node, kinds: dict) -> str | None:
    target = str(node.get("_target_", "")) if node is not None else ""
    return kinds.get(target.rsplit(".", 1)[-1])


def objective_kind(cfg: DictConfig) -> str | None:
    """dmf | fm, or None for an objective of a user's own."""
    return _kind(cfg.get("objective"), OBJECTIVES)


def guidance_kind(cfg: DictConfig) -> str | None:
    """none | mg | distill, or None for a guidance of a user's own."""
    return _kind(cfg.get("guidance"), GUIDANCES)
