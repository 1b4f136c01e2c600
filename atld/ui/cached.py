"""Cached computations for the pages (`st.cache_data`: results are NumPy/pandas, keyed by the
checkpoint's path and model hash plus every parameter). Each wrapper only loads its inputs and
calls one core function."""

from __future__ import annotations

import streamlit as st
import torch

from atld.ui.state import get_data, get_run


def _test_images(dataset: str, indices: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    from atld.data import as_float01

    data = get_data(dataset)
    idx = torch.tensor(indices, dtype=torch.long)
    return as_float01(data.x_test[idx]), data.y_test[idx]


@st.cache_data(show_spinner="Attacking…", max_entries=64)
def attack(path: str, model_hash: str, indices: tuple[int, ...], kind: str, epsilon: float, steps: int,
           seed: int, imt_mode: str):
    """atld.ui.attack_view.attack_view on test images `indices`."""
    from atld.attacks import AttackConfig
    from atld.ui.attack_view import attack_view

    run = get_run(path, model_hash)
    x, y = _test_images(run.config.dataset, indices)
    return attack_view(run, x, y, AttackConfig(kind, epsilon, steps=steps), seed=seed, imt_mode=imt_mode)


@st.cache_data(show_spinner="Computing latents…", max_entries=16)
def latents(path: str, model_hash: str, n: int, attack_name: str, epsilon: float, seed: int) -> dict:
    """atld.latent.extract_latents on the first `n` test images under the named attack, as
    NumPy arrays (LatentSet.arrays(); d_nat/d_pert absent without a discriminator)."""
    from atld.attacks import attack_from_name
    from atld.latent import extract_latents

    run = get_run(path, model_hash)
    data = get_data(run.config.dataset)
    n = min(n, len(data.y_test))
    generator = torch.Generator().manual_seed(int(seed))
    found = extract_latents(run, data.x_test[:n], data.y_test[:n], attack_from_name(attack_name, epsilon),
                            generator=generator)
    return found.arrays()


@st.cache_data(show_spinner="Projecting…", max_entries=32)
def embedding(path: str, model_hash: str, n: int, attack_name: str, epsilon: float, seed: int, space: str,
              method: str, fit_on: str):
    """atld.latent.Embedder(method, fit_on).fit(...).embedding_ for `latents(...)`: [2N, 2]."""
    from atld.latent import Embedder

    arrays = latents(path, model_hash, n, attack_name, epsilon, seed)
    key = "logits" if space == "logits" else "features"
    return Embedder(method, fit_on, random_state=seed).fit(
        arrays[f"{key}_nat"], arrays[f"{key}_pert"], arrays["labels"]).embedding_


@st.cache_data(show_spinner="Measuring the gap…", max_entries=32)
def gap(path: str, model_hash: str, n: int, attack_name: str, epsilon: float, seed: int, space: str) -> dict:
    """atld.latent.gap_numbers in latent space (not on the 2-D map)."""
    from atld.latent import gap_numbers

    a = latents(path, model_hash, n, attack_name, epsilon, seed)
    key = "logits" if space == "logits" else "features"
    return gap_numbers(a[f"{key}_nat"], a[f"{key}_pert"], a["labels"], a.get("d_nat"), a.get("d_pert"),
                       permutations=100, random_state=seed)


@st.cache_data(show_spinner="Computing robust accuracy vs ε…", max_entries=32)
def accuracy_curve(path: str, model_hash: str, epsilons: tuple[float, ...], attack_name: str, inference: str,
                   limit: int, seed: int) -> list[dict]:
    """atld.evaluate.robust_accuracy_curve (rows as EvalReport.rows)."""
    from atld.evaluate import robust_accuracy_curve

    run = get_run(path, model_hash)
    return robust_accuracy_curve(run, list(epsilons), attack=attack_name, inference=inference, limit=limit,
                                 data=get_data(run.config.dataset), seed=seed, device="cpu")
