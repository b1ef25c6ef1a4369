"""The fused JVP attention kernels build for real GPUs on a CPU machine (Triton's compiler and ptxas, no card),
and some block shape of each fits one block's shared memory on the cards the backend claims: a kernel that only
the interpreter had run could otherwise fail its first launch on a lent GPU."""
import json

import pytest
import torch

triton = pytest.importorskip("triton")

from tests.helpers import run_python  # noqa: E402

SCRIPT = '''
import json, sys
import torch
from dmf.kernels import triton_attention as ta
from dmf.kernels.offline_compile import KERNELS, shared_memory
smallest = next(c for c in KERNELS["forward"].configs if (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps,
                c.num_stages) == ta.SMALLEST)
out = {"xl": {k: [shared_memory(90, k, c, torch.bfloat16, 72) for c in t.configs] for k, t in KERNELS.items()}}
for capability, dtype, head_dim in ((80, torch.float32, 256), (90, torch.float32, 256), (89, torch.float32, 128),
                                    (89, torch.bfloat16, 256)):
    out[f"sm_{capability} {dtype} {head_dim}"] = {k: shared_memory(capability, k, smallest, dtype, head_dim)
                                                 for k in KERNELS}
print(json.dumps(out))
'''


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the kernels run for real (test_jvp_attention.py)")
def test_the_kernels_build_for_gpus_and_fit_their_shared_memory(tmp_path):
    from dmf.kernels.offline_compile import CARDS

    script = tmp_path / "build.py"
    script.write_text(SCRIPT)
    out = run_python(str(script), check=True, unset=("TRITON_INTERPRET",))
    sizes = json.loads(out.stdout.strip().splitlines()[-1])
    limit = {f"sm_{cap}": shared for cap, shared in CARDS.values()}
    # DMF-XL/2 (head dim 72, bf16) on an H100: every tuned block shape builds and fits
    assert all(0 < s <= limit["sm_90"] for shapes in sizes.pop("xl").values() for s in shapes)
    # the smallest shape holds the largest inputs the backend accepts on A100/H100, and fp32 at 128 / bf16 at 256
    # on a 99 KB card (L40S, RTX 4090)
    for case, per_kernel in sizes.items():
        assert all(s <= limit[case.split()[0]] for s in per_kernel.values()), (case, per_kernel)


def test_a_card_too_small_for_every_block_shape_is_one_clear_error():
    from triton.runtime.errors import OutOfResources

    from dmf.kernels.triton_attention import _launch_on_gpu

    class TooBig:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                raise OutOfResources(278528, 232448, "shared memory")
            return launch

    q = torch.zeros(1, 2, 37, 256)
    with pytest.raises(RuntimeError, match=r"torch.float32 inputs with head dim 256: it needs 278528 "
                                           r"bytes of shared memory per block, the card gives 232448. Fix: train in "
                                           r"bf16 \(trainer.precision=bf16-mixed\) or set attention.backend=math"):
        _launch_on_gpu(TooBig(), (1, 2), q, q, q)
