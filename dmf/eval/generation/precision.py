"""Float32 matmul/convolution precision, scoped: eval.precision (TF32 or not) is a choice for the network only;
the feature extractors always run in full fp32, as EDM2 computes FID / FD-DINOv2 features (cuDNN allows TF32
convolutions by default, so fp32 has to be asked for explicitly)."""
from contextlib import contextmanager

import torch

# eval.precision: the network's autocast dtype (None: fp32; tf32 is fp32 with TF32 matmuls)
NETWORK_PRECISIONS = {"fp32": None, "tf32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@contextmanager
def tf32(enabled: bool):
    """TF32 on or off for CUDA matmuls and cuDNN convolutions inside the block; the previous flags come back after."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(enabled)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextmanager
def full_fp32(device_type: str):
    """No TF32 and no autocast (a caller's bf16 region, e.g. a training step, does not leak into the features)."""
    with tf32(False), torch.autocast(device_type, enabled=False):
        yield
