#!/usr/bin/env bash
# GluonCV's train_faster_rcnn.py (with samplers.gluoncv.install()) on MXNet's dist_sync kvstore:
# one scheduler, one server and two workers on this machine, loopback only, CPU.
#
#   tools/dist/run_dist_sync.sh PATH/TO/train_faster_rcnn.py [OUT_DIR] [extra script options]
#
# Writes a tiny VOC set (hard objects included) to OUT_DIR/voc, each process's log to
# OUT_DIR/<role>.log, and prints the last lines of each worker's log. See docs/distributed.md.
set -euo pipefail
SCRIPT=${1:?usage: $0 PATH/TO/train_faster_rcnn.py [OUT_DIR] [extra options]}
OUT=${2:-$(mktemp -d /tmp/dist_sync.XXXXXX)}
shift $(( $# >= 2 ? 2 : 1 ))
HERE=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PY:-$HERE/.venv/bin/python}
PORT=${DMLC_PS_ROOT_PORT:-$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
mkdir -p "$OUT"
(cd "$HERE" && $PY -m tools.dist.launch --write-voc "$OUT/voc")

export DMLC_PS_ROOT_URI=127.0.0.1 DMLC_PS_ROOT_PORT=$PORT DMLC_NUM_SERVER=1 DMLC_NUM_WORKER=2
export DMLC_NODE_HOST=127.0.0.1 DMLC_INTERFACE=lo DIST_VOC_ROOT="$OUT/voc"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
# The scheduler and the server are MXNet itself: importing mxnet with DMLC_ROLE set runs them.
DMLC_ROLE=scheduler $PY -c 'import mxnet' >"$OUT/scheduler.log" 2>&1 & pids+=($!)
DMLC_ROLE=server $PY -c 'import mxnet' >"$OUT/server.log" 2>&1 & pids+=($!)
workers=()
for rank in 0 1; do
  (cd "$HERE" && DMLC_ROLE=worker exec $PY -m tools.dist.launch "$SCRIPT" --gpus '' \
      --kv-store dist_sync --num-workers 0 --batch-size 1 --epochs 1 --val-interval 2 \
      --log-interval 1 --lr 0.001 --save-prefix "$OUT/worker$rank/" "$@") \
      >"$OUT/worker$rank.log" 2>&1 & workers+=($!); pids+=($!)
done
status=0
for w in "${workers[@]}"; do wait "$w" || status=$?; done
for rank in 0 1; do
  echo "== worker $rank (exit status in the last line of $OUT/worker$rank.log if it failed)"
  grep -v -i 'warn' "$OUT/worker$rank.log" | tail -n 8
done
echo "logs: $OUT   status: $status"
exit $status
