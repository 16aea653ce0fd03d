#!/usr/bin/env bash
# The one command for a borrowed GPU machine (issue 11 item 5 and the GPU benches), run from the repo root:
#     bash bench/device_check.sh            # results and logs land in $OUT
# Needs the carried wheels in .whl/ (eth-utils, eth-hash, eth-typing, hexbytes, cytoolz, pycryptodome,
# eth_abi, parsimonious); the machine brings python3, torch, numpy, safetensors, scikit-learn.
# Budget: about 4 minutes for gpu_agreement (two runs, each stopped by its time cap), about 2.5 for the
# guided-mining bench, under 9 in all.
# Knobs (environment): GA_PROOFS (1000), GA_K (2), GA_STRICT_CAP_S (130), GA_DEFAULTS_CAP_S (50; 0 skips).
set -euo pipefail
export PYTHONUNBUFFERED=1
: "${OUT:=/tmp/device_check_out}"
mkdir -p "$OUT"
start=$SECONDS

shopt -s nullglob
wheels=(.whl/*.whl)
if ((${#wheels[@]})); then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  echo "WARNING: no wheels in .whl/; relying on what python3 already has"
  export PYTHONPATH=$PWD
fi

echo "== machine"
nvidia-smi -L || echo "nvidia-smi failed"
lscpu | grep -m1 'Model name' || true
echo "cpus: $(nproc)"
python3 -c 'import sys, torch; print("python", sys.version.split()[0], "| torch", torch.__version__, "| cuda", torch.version.cuda,
  "| available", torch.cuda.is_available(), "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")'
echo "== modules pulled by 'import bench.gpu_agreement' (must be pol_core, torch, numpy, Crypto and torch's own)"
python3 -c 'import sys; base = set(sys.modules); import bench.gpu_agreement
print(" ".join(sorted({m.split(".")[0] for m in set(sys.modules) - base} - set(sys.stdlib_module_names))))'

# One gpu_agreement run; a failure is reported and the script goes on to the next section.
agreement() {  # name cap_s extra-args...
  local name=$1 cap=$2; shift 2
  echo "== gpu_agreement $name (N=${GA_PROOFS:-1000}, k=${GA_K:-2}, cap ${cap}s; $((SECONDS - start)) s so far)"
  timeout -k 10 $((cap + 90)) python3 bench/gpu_agreement.py --proofs "${GA_PROOFS:-1000}" --k "${GA_K:-2}" \
      --time-cap "$cap" --allow-torch-version --out "$OUT/gpu_agreement_$name.json" "$@" 2>&1 \
    | tee "$OUT/gpu_agreement_$name.log" || echo "gpu_agreement $name FAILED (exit ${PIPESTATUS[0]})"
}
# strict: the miner on CUDA with the verifier's settings (fp32, no TF32, deterministic kernels).
agreement strict "${GA_STRICT_CAP_S:-130}" --miner-mode strict
# prover-defaults: torch's own CUDA settings, as the shipped prover runs (cuDNN may use TF32).
if [ "${GA_DEFAULTS_CAP_S:-50}" != 0 ]; then
  agreement prover-defaults "${GA_DEFAULTS_CAP_S:-50}" --miner-mode prover-defaults
fi

# ---------------------------------------------------------------------------------------------
# Sharded evaluation (issue 15) on the machine's CPU cores: one ResNet-18 proof, pinned dispatch in
# this process and every worker (torch release check skipped: timings only). 10,000 images at 16
# workers first (the 16-core figure), then 1,000 images at 16/8/4/2/1 (4 shards per proof: no gain
# past 4 workers; the 1-worker proof is the costliest and goes last). --max-seconds skips what
# would end past it; the JSON is rewritten after every proof. Budget: about 3 minutes. Knob: SH_CAP_S.
# ---------------------------------------------------------------------------------------------
echo "== sharded evaluation (cap ${SH_CAP_S:-170}s; $((SECONDS - start)) s so far)"
timeout -k 10 $((${SH_CAP_S:-170} + 40)) python3 bench/eval_shard.py --sizes 10000,1000 --backends 16,8,4,2,1 \
    --repeats 1 --max-seconds "${SH_CAP_S:-170}" --allow-torch-version --out "$OUT/sharded.json" 2>&1 \
  | tee "$OUT/sharded.log" || echo "sharded evaluation FAILED (exit ${PIPESTATUS[0]})"

# ---------------------------------------------------------------------------------------------
# Guided-mining GPU bench (issue 14): time to a block on CUDA for faithful/fast/guided from the same start
# model and the same R, every proof re-checked by pol_core on the CPU (where a verifier recomputes it).
# digits-cnn: k = 4..24, 3 R per k, 3 s cap per run (k = 16 always run); ResNet-18 on generated CIFAR data
# (320 train / 100 test images), k = 4, 8, 16, 2 R, 5 s cap, R alone (--r-only: on random labels the
# accuracy rule is a lottery). Worst case about 2.5 minutes; a `timeout` keeps what was measured.
# Knobs: GM_DIGITS_CAP_S (3), GM_RESNET_CAP_S (5); GM_SKIP=1 skips the section.
echo "== modules pulled by 'import bench.mine' (must be pol_core, prover, torch, numpy, Crypto and torch's own)"
python3 -c 'import sys; base = set(sys.modules); import bench.mine
print(" ".join(sorted({m.split(".")[0] for m in set(sys.modules) - base} - set(sys.stdlib_module_names))))'
guided_mine() {  # name timeout_s args...
  local name=$1 limit=$2; shift 2
  echo "== mine.py $name on cuda ($((SECONDS - start)) s so far)"
  timeout -k 10 "$limit" python3 bench/mine.py --device cuda --seconds 0 --useful-seconds 0 \
      --json "$OUT/mine_$name.json" --markdown "$OUT/mine_$name.md" "$@" 2>&1 \
    | tee "$OUT/mine_$name.log" || echo "mine.py $name FAILED (exit ${PIPESTATUS[0]})"
}
if [ "${GM_SKIP:-0}" != 1 ]; then
  guided_mine digits_cuda 80 --tasks digits-cnn --modes faithful,fast,guided --ks 4,8,12,16,20,24 --seeds 3 \
      --cap "${GM_DIGITS_CAP_S:-3}" --always-at 16
  guided_mine resnet18_cuda 90 --tasks cifar10-resnet18 --modes faithful,fast,guided --ks 4,8,16 --seeds 2 \
      --cap "${GM_RESNET_CAP_S:-5}" --always-at 16 --warmup 0 --r-only
fi
# ---------------------------------------------------------------------------------------------

echo "== done in $((SECONDS - start)) s; files in $OUT:"
ls -l "$OUT"
