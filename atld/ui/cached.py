"""Cached computations for the pages (`st.cache_data`: results are NumPy / pandas / plain objects,
keyed by the checkpoint's path and model hash plus every parameter). Each wrapper only loads its
inputs and calls one core function."""

from __future__ import annotations

import streamlit as st
import torch

from atld.ui.state import get_data, get_run


def _test_images(dataset: str, indices: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    from atld.data.loaders import as_float01

    data = get_data(dataset)
    idx = torch.tensor(indices, dtype=torch.long)
    return as_float01(data.x_test[idx]), data.y_test[idx]


@st.cache_data(show_spinner="Attacking…", max_entries=64)
def attack(path: str, model_hash: str, indices: tuple[int, ...], kind: str, epsilon: float, steps: int,
           seed: int, imt_mode: str):
    """atld.ui.attack_view.attack_view on test images `indices`."""
    from atld.attacks.gradient import AttackConfig
    from atld.ui.attack_view import attack_view

    run = get_run(path, model_hash)
    x, y = _test_images(run.config.dataset, indices)
    return attack_view(run, x, y, AttackConfig(kind, epsilon, steps=steps), seed=seed, imt_mode=imt_mode)


@st.cache_data(show_spinner="Computing latents, their map and the gap…", max_entries=32)
def latent_map(path: str, model_hash: str, n: int, attack_name: str, epsilon: float, seed: int, space: str,
               projection: str, fit_on: str):
    """atld.latent.latent_map on the first `n` test images: latents, the 2-D map and the gap numbers
    (the `embed` command's pipeline; its disk cache serves repeated requests)."""
    from atld.config.latent import LatentConfig
    from atld.latent import LatentCache, latent_map

    run = get_run(path, model_hash)
    data = get_data(run.config.dataset)
    n = min(n, len(data.y_test))
    config = LatentConfig(attack=attack_name, epsilon=epsilon, projection=projection, fit_on=fit_on, space=space,
                          limit=max(n, 2), seed=seed, permutations=100)
    return latent_map(run, data.x_test[:n], data.y_test[:n], config, LatentCache())


@st.cache_data(show_spinner="Computing robust accuracy vs ε…", max_entries=32)
def accuracy_curve(path: str, model_hash: str, epsilons: tuple[float, ...], attack_name: str, inference: str,
                   limit: int, seed: int) -> list[dict]:
    """atld.evaluate.robust_accuracy_curve (rows as EvalReport.rows); any attack (AutoAttack and
    the adaptive attack included) and inference mode."""
    from atld.evaluate import robust_accuracy_curve

    run = get_run(path, model_hash)
    return robust_accuracy_curve(run, list(epsilons), attack=attack_name, inference=inference, limit=limit,
                                 data=get_data(run.config.dataset), seed=seed, device="cpu")


@st.cache_data(show_spinner="Checking the discriminator…", max_entries=32)
def discriminator_check(path: str, model_hash: str, n: int, seed: int) -> dict:
    """atld.evaluate.discriminator_check on the first `n` test images at the dataset's ε (a dict)."""
    from atld.evaluate.discriminator import discriminator_check as check

    run = get_run(path, model_hash)
    data = get_data(run.config.dataset)
    x, y = _test_images(run.config.dataset, tuple(range(min(n, len(data.y_test)))))
    return check(run, x, y, run.spec.epsilon, seed=seed).to_dict()
