#!/usr/bin/env bash
# Every GPU measurement of issue 11 in one go on one lent GPU (about 9 minutes on an H100 / H200):
#   tests   the fused JVP attention tests on the card (bf16 / fp16 / fp32, L = 37 ... 1024)
#   attn    attention + JVP micro-benchmark: fused vs math, L = 256 / 1024, d 72, batch 16, 16 heads
#   step    DMF-XL/2 step at 256, batch 32: math:eager (baseline) vs auto:eager, joint and split JVP, with a profile
#   train   the front door: run.py experiment=dmf_xl_256 data=synthetic, 60 steps, steady-state img/s
#   512     DMF-XL/2 step at 512 (qk-norm), batch 16: auto:eager joint and split JVP vs math:eager
#   decode  SD-VAE decode fp32 vs bf16 (time, uint8 difference)
#   eval    1-NFE generation img/s, DMF-XL/2 at 256, batch 256: the network alone eager / compiled / CUDA graphs
#           (model.compile=reduce-overhead), and end to end (bf16 decode + Inception) with CUDA graphs
#   compile DMF-XL/2 step at 256, batch 32: auto:eager vs auto:compile (compile time), with a profile
# Usage (repo root): bash bench/gpu_all.sh            all parts, or PARTS="step train" bash bench/gpu_all.sh
# Results: markdown blocks appended to $RESULTS/*.md (default: $OUT if set, the device tool's folder that comes
# back, else bench/results), named by the card; the full log in $RESULTS/gpu_all.log.
# Missing packages (hydra, omegaconf, diffusers, webdataset) come from .whl/ when present: bench/gpu_wheels.sh.
set -uo pipefail  # no -e: a failing part must not lose the other parts' numbers
cd "$(dirname "$0")/.."
PY=${PY:-python3}
PARTS=${PARTS:-tests attn step train 512 decode eval compile}
RESULTS=${RESULTS:-${OUT:-bench/results}}
mkdir -p "$RESULTS"
if [ -d .whl ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
LOG=$RESULTS/gpu_all.log
CARD=$($PY -c "import torch; print(torch.cuda.get_device_name().split()[1].lower())" 2>/dev/null || echo nogpu)
part() {  # part NAME TIMEOUT_S CMD...
    local name=$1 limit=$2; shift 2
    case " $PARTS " in *" $name "*) ;; *) return 0 ;; esac
    echo "=== [$name] $(date -u +%T) $*" | tee -a "$LOG"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | grep -v -E "Warning|warnings.warn" | tee -a "$LOG"
    echo "=== [$name] exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s" | tee -a "$LOG"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$LOG"
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$LOG"

part tests 150 $PY -m pytest -q -x -p no:cacheprovider tests/kernels tests/models/test_jvp_and_attention.py \
    tests/models/test_compile_modes.py
part attn 120 $PY bench/attention_jvp.py --lengths 256,1024 --batch 16 --heads 16 --head-dim 72 \
    --out "$RESULTS/attention_jvp_$CARD.md"
part step 180 $PY bench/dmf_step.py --model DMFT-XL/2 --resolution 256 --batch 32 --warmup 3 --iters 8 \
    --configs math:eager,auto:eager,auto:eager:split --profile auto:eager:split --out "$RESULTS/dmf_step_$CARD.md" \
    --json "$RESULTS/dmf_step_256_$CARD.json"
INIT=/tmp/dmf_xl_256_init.pt
part train 240 bash -c "$PY bench/init_checkpoint.py --model DMFT-XL/2 --input-size 32 --out $INIT && \
    $PY run.py experiment=dmf_xl_256 data=synthetic ckpt=$INIT data.global_batch_size=32 trainer.devices=1 trainer.strategy=auto \
    trainer.max_steps=60 trainer.log_every_n_steps=10 data.datamodule.num_workers=4 \
    hydra.run.dir=/tmp/dmf_train_run \
    '+callbacks.step_timer={_target_: bench.step_timer.StepTimer, warmup: 20, out: $RESULTS/train_run_$CARD.json}'"
part 512 180 $PY bench/dmf_step.py --model DMFT-XL/2 --resolution 512 --qk-norm --batch 16 --sample-batch 64 \
    --warmup 2 --iters 5 --configs auto:eager,auto:eager:split,math:eager --out "$RESULTS/dmf_step_$CARD.md"
part decode 90 $PY bench/decode_precision.py --resolution 256 --batch 64 --out "$RESULTS/decode_precision_$CARD.md"
EVAL="$PY bench/eval_throughput.py --device cuda --model DMFT-XL/2 --resolution 256 --batch 256 --num-samples 2048 \
    --precision bf16 --out $RESULTS/eval_$CARD.md"
part eval 300 bash -c "for c in none default reduce-overhead; do $EVAL --vae latent --features none --compile \$c; done && \
    $EVAL --vae sd --features inception --decode-precision bf16 --compile reduce-overhead"
part compile 420 $PY bench/dmf_step.py --model DMFT-XL/2 --resolution 256 --batch 32 --warmup 3 --iters 8 \
    --configs auto:eager,auto:compile --profile auto:compile --out "$RESULTS/dmf_step_$CARD.md" \
    --json "$RESULTS/dmf_step_256_compile_$CARD.json"
# the front door against the step benchmark on the same card (issue 11: within 10 %)
$PY - "$RESULTS/train_run_$CARD.json" "$RESULTS/dmf_step_256_$CARD.json" <<'PYEOF' 2>/dev/null | tee -a "$LOG"
import json, sys
train, step = (json.load(open(p)) for p in sys.argv[1:3])
bench = next(r for r in step["rows"] if r.get("config") == "auto:eager" and "img_s" in r)
print(f"run.py steady state {train['img_s']:.1f} img/s vs bench/dmf_step.py auto:eager {bench['img_s']:.1f} img/s: "
      f"{train['img_s'] / bench['img_s']:.2f}x")
PYEOF
echo "results in $RESULTS:" && ls -la "$RESULTS"
