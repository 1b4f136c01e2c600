#!/usr/bin/env bash
# Rebuilds the shipped digits checkpoints (small CNN, ε = 0.2, 30 epochs, batch 50, seed 0,
# the TrainConfig defaults) and stores each one's evaluation in its card.
# Run from the repository root: bash checkpoints/make_digits.sh
set -euo pipefail
for method in natural pgd-at atld; do
  rm -rf "checkpoints/digits-$method"
  python -m atld train --dataset digits --method "$method" --epochs 30 --seed 0 --device cpu \
    --out "checkpoints/digits-$method" --name "digits-$method" --quiet
done
for method in natural pgd-at atld; do
  python -m atld eval --checkpoint "checkpoints/digits-$method" --limit 450 --device cpu --store \
    --attacks natural,fgsm,pgd20,cw20,autoattack,adaptive --format table
done
