#!/usr/bin/env bash
# ATLD recipe sweep on MNIST and Fashion-MNIST: which settings train without collapsing, over
# seeds. All runs start at once (one process each) and stop at a common time limit; every run's
# card (per-epoch metrics: clean and PGD-20 accuracy, top-class share, D's AUC) goes into
# OUT/sweep.tar.gz. It is what chose the ATLD recipes of checkpoints/make_real.sh (docs/results.md).
#
#   bash benchmarks/atld_recipe_sweep.sh OUT DATA_ROOT [DEVICE] [SECONDS]
#
# DATA_ROOT holds mnist/MNIST/raw and fashion-mnist/FashionMNIST/raw. DRY=1 replaces every dataset
# by digits and every run by one epoch (a check of the script itself on a CPU).
set -uo pipefail
out=$1; root=$2; device=${3:-cuda}; limit=${4:-420}
mkdir -p "$out/runs"
common=(--method atld --seed 0 --eval-limit 1000 --device "$device" --amp off --quiet)
declare -A runs=(
  [m-sgd1e1-s0]="mnist --epochs 8 --optimizer sgd --lr 0.1 --weight-decay 2e-4"
  [m-sgd1e1-s1]="mnist --epochs 8 --optimizer sgd --lr 0.1 --weight-decay 2e-4 --seed 1"
  [m-sgd1e1-s2]="mnist --epochs 8 --optimizer sgd --lr 0.1 --weight-decay 2e-4 --seed 2"
  [m-sgd1e1-r4-s1]="mnist --epochs 8 --optimizer sgd --lr 0.1 --weight-decay 2e-4 --epsilon-ramp-epochs 4 --seed 1"
  [m-sgd1e1-r4-s2]="mnist --epochs 8 --optimizer sgd --lr 0.1 --weight-decay 2e-4 --epsilon-ramp-epochs 4 --seed 2"
  [m-sgd1e1-bn-s1]="mnist --epochs 8 --optimizer sgd --lr 0.1 --weight-decay 2e-4 --arch fast-cnn-bn --seed 1"
  [m-adam1e3-s1]="mnist --epochs 8 --optimizer adam --lr 1e-3 --seed 1"
  [m-sgd1e1-e12-s1]="mnist --epochs 12 --optimizer sgd --lr 0.1 --weight-decay 2e-4 --seed 1"
  [f-sgd1e1-s0]="fashion-mnist --epochs 8 --optimizer sgd --lr 0.1 --weight-decay 2e-4"
  [f-sgd1e1-s1]="fashion-mnist --epochs 8 --optimizer sgd --lr 0.1 --weight-decay 2e-4 --seed 1"
  [f-sgd1e1-r3-s0]="fashion-mnist --epochs 8 --optimizer sgd --lr 0.1 --weight-decay 2e-4 --epsilon-ramp-epochs 3"
  [f-sgd5e2-s0]="fashion-mnist --epochs 8 --optimizer sgd --lr 0.05 --weight-decay 2e-4"
  [f-adam5e3-s0]="fashion-mnist --epochs 8"
  [f-adam1e3-s0]="fashion-mnist --epochs 8 --optimizer adam --lr 1e-3"
  [f-sgd1e1-bn-s0]="fashion-mnist --epochs 8 --optimizer sgd --lr 0.1 --weight-decay 2e-4 --arch fast-cnn-bn"
)
for name in "${!runs[@]}"; do
  read -r dataset rest <<<"${runs[$name]}"
  data="$root/$dataset"
  if [[ "${DRY:-0}" == 1 ]]; then dataset=digits; rest="$(sed -E 's/--epochs [0-9]+/--epochs 1/; s/--arch fast-cnn-bn//' <<<"$rest") --arch fast-cnn"; fi
  # shellcheck disable=SC2086
  timeout "$limit" python -m atld train --dataset "$dataset" --data-root "$data" "${common[@]}" $rest \
    --out "$out/runs/$name" --name "$name" >"$out/runs/$name.log" 2>&1 &
done
wait
python - "$out/runs" >"$out/runs/summary.txt" <<'EOF'
import json, sys
from pathlib import Path
for card in sorted(Path(sys.argv[1]).glob("*/card.json")):
    c = json.loads(card.read_text())
    print(card.parent.name, c.get("status"), (c.get("collapse") or "")[:90])
    for m in c.get("metrics", []):
        print("  ep {epoch} clean {test_clean_acc:.3f} pgd20 {test_pgd20_acc:.3f} top {top:.2f} d_auc {d:.3f} s {sec:.1f}".format(
            epoch=m.get("epoch"), test_clean_acc=m.get("test_clean_acc", float("nan")),
            test_pgd20_acc=m.get("test_pgd20_acc", float("nan")), top=m.get("top_class_share", float("nan")),
            d=m.get("d_auc", float("nan")), sec=m.get("seconds", float("nan"))))
EOF
cat "$out/runs/summary.txt"
tail -n 3 "$out"/runs/*.log | grep -v "^$" | head -60
tar czf "$out/sweep.tar.gz" --exclude="*.safetensors" -C "$out" runs
