#!/usr/bin/env bash
# Rebuilds the shipped real-data checkpoints (MNIST, Fashion-MNIST, CIFAR-10) and stores each
# one's evaluation in its card. Recipes: the dataset's defaults (atld/data/registry.py) plus the
# flags below; docs/results.md has the numbers they give and why these settings.
#
#   bash checkpoints/make_real.sh DATA_ROOT [train|eval|all] [DEVICE] [NAME ...]
#
# DATA_ROOT holds mnist/MNIST/raw, fashion-mnist/FashionMNIST/raw and cifar10/exact (the layout of
# ../shared/data). Without NAMEs every checkpoint below is rebuilt, one after the other; with
# PARALLEL=1 the named ones run at once (on a GPU machine; logs in LOG_DIR, default /tmp). Evaluation: the first 1,000 test images
# of MNIST and Fashion-MNIST, natural / FGSM / PGD-20 / CW-20 / AutoAttack (standard) / the adaptive
# attack, every inference mode the checkpoint supports; CIFAR-10: the first four on all 1,017 test
# images, AutoAttack and the adaptive attack on the first AA_LIMIT (default 200; a GPU takes all).
# EPOCHS=N and LIMIT=N override the recipes' epochs and the test images (a quick check of the script).
set -euo pipefail
root=${1:?usage: make_real.sh DATA_ROOT [train|eval|all] [DEVICE] [NAME ...]}
stage=${2:-all}
device=${3:-cpu}
shift $(($# < 3 ? $# : 3))

ATLD_SGD="--optimizer sgd --lr 0.1 --weight-decay 2e-4"  # ATLD on 28x28: Adam trains it to no robustness
declare -A RECIPES=(
  [mnist-natural]="mnist natural 3"
  [mnist-pgd-at]="mnist pgd-at 6"
  [mnist-feature-scatter]="mnist feature-scatter 6"
  [mnist-atld]="mnist atld 8 $ATLD_SGD"
  # a D that judges single images (docs/results.md, "What D learned"): BatchNorm D scoring natural and
  # PGD latents in one shuffled call; the classifier trains with PGD-AT's loss (ATLD's collapsed on PGD)
  [mnist-atld-image-d]="mnist atld 8 --d-norm batch --d-batch mixed --d-perturbation pgd --label-smoothing 0 --gap-weight-scale 0"
  [fashion-mnist-natural]="fashion-mnist natural 3"
  [fashion-mnist-pgd-at]="fashion-mnist pgd-at 6"
  [fashion-mnist-feature-scatter]="fashion-mnist feature-scatter 6"
  [fashion-mnist-atld]="fashion-mnist atld 8 $ATLD_SGD --epsilon-ramp-epochs 3"
  [cifar10-natural]="cifar10-exact natural 30 --batch-size 64 --lr 0.1"
  [cifar10-pgd-at]="cifar10-exact pgd-at 12"
  [cifar10-atld]="cifar10-exact atld 15"
)
ORDER=(mnist-natural mnist-pgd-at mnist-feature-scatter mnist-atld mnist-atld-image-d
       fashion-mnist-natural fashion-mnist-pgd-at fashion-mnist-feature-scatter fashion-mnist-atld
       cifar10-natural cifar10-pgd-at cifar10-atld)
names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=("${ORDER[@]}")

rebuild() {
  local name=$1 dataset method epochs flags limit
  read -r dataset method epochs flags <<<"${RECIPES[$name]:?unknown checkpoint $name}"
  epochs=${EPOCHS:-$epochs}
  if [[ $stage == train || $stage == all ]]; then
    rm -rf "checkpoints/$name"
    # shellcheck disable=SC2086
    python -m atld train --dataset "$dataset" --data-root "$root" --method "$method" --epochs "$epochs" \
      --seed 0 --device "$device" --amp off --out "checkpoints/$name" --name "$name" --quiet $flags
  fi
  if [[ $stage == eval || $stage == all ]]; then
    if [[ $dataset == cifar10-exact ]]; then  # AutoAttack and the adaptive attack on all 1,017 take hours on 2 cores
      python -m atld eval --checkpoint "checkpoints/$name" --data-root "$root" ${LIMIT:+--limit $LIMIT} \
        --device "$device" --store --quiet --attacks natural,fgsm,pgd20,cw20 --format table
      python -m atld eval --checkpoint "checkpoints/$name" --data-root "$root" --limit "${LIMIT:-${AA_LIMIT:-200}}" \
        --device "$device" --store --quiet --attacks autoattack,adaptive --format table
    else
      python -m atld eval --checkpoint "checkpoints/$name" --data-root "$root" --limit "${LIMIT:-1000}" \
        --device "$device" --store --quiet --attacks natural,fgsm,pgd20,cw20,autoattack,adaptive --format table
    fi
  fi
}

if [[ ${PARALLEL:-0} == 1 ]]; then
  for name in "${names[@]}"; do rebuild "$name" >"${LOG_DIR:-/tmp}/$name.log" 2>&1 & done
  status=0; for job in $(jobs -p); do wait "$job" || status=1; done; exit $status
fi
for name in "${names[@]}"; do rebuild "$name"; done
