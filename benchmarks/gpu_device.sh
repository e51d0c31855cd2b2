#!/usr/bin/env bash
# The GPU check on the workplace's lent GPU machine (the `device` tool), as session 18 ran it.
# That machine has torch, transformers and accelerate but not TRL or datasets, and no network:
# fetch their wheels here first (python 3.12, x86-64), into .whl/ (ignored by .git/info/exclude):
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 fsspec==2026.9.0
#   mkdir -p .whl/opt && python3 -m pip download ... -d .whl/opt pyarrow==26.0.1  # if its < 24
#
# then run this through the device tool with carry [".whl"], e.g. `bash benchmarks/gpu_device.sh
# 240 230 120` (seconds for the GRPO comparison, then for the smallest rung, then for the three
# precisions of benchmarks/precision.py on the 100m rung; 0 skips a part). The log goes to
# $OUT/log, so a part cut off by its limit still comes back with the lines it printed.
set -o pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
grpo_s=${1:-240}; rung_s=${2:-230}; prec_s=${3:-0}; log=${OUT:-/tmp}/log
python3 -c "import pyarrow, sys; sys.exit(int(pyarrow.__version__.split('.')[0]) < 24)" \
  || cp .whl/opt/pyarrow*.whl .whl/ 2>/dev/null
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 2
export PYTHONPATH=/tmp/site:$PWD
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch, transformers, trl, datasets; print('torch', torch.__version__,
    'transformers', transformers.__version__, 'trl', trl.__version__, 'datasets',
    datasets.__version__)"; } 2>&1 | tee "$log"
if [ "$grpo_s" -gt 0 ]; then
  timeout "$grpo_s" python3 benchmarks/gpu_check.py --rounds 1 --skip-rung 2>&1 | tee -a "$log"
  echo "rc_grpo=$?" | tee -a "$log"
fi
if [ "$rung_s" -gt 0 ]; then
  timeout "$rung_s" python3 benchmarks/gpu_check.py --skip-grpo 2>&1 | tee -a "$log"
  echo "rc_rung=$?" | tee -a "$log"
fi
if [ "$prec_s" -gt 0 ]; then
  timeout "$prec_s" python3 benchmarks/precision.py --model micro:100m --batch 32 --group 8 \
    --max-new-tokens 256 --steps 5 --warmup 2 2>&1 | tee -a "$log"
  echo "rc_precision=$?" | tee -a "$log"
fi
