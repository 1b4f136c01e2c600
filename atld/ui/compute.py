"""The app's cached computations ("views"), each one short function run by a compute worker
(`atld.ui.service`): the service keys it by its arguments (a checkpoint by its content) and
shares its result with every session. Adding a view is one `@view()` function here and, for a
page, one line in `atld.ui.cached`.

Each worker process keeps its own small caches of loaded checkpoints and datasets; latents,
projections and gap numbers also go to the on-disk `LatentCache` (keyed by content), so a map
computed once on a machine is read back by every later server.

This module imports no torch: the server imports it to build requests, and a page whose views
return plain data (numbers, NumPy arrays, tables, plotly JSON) draws without torch in the server.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np

from atld.config.settings import settings
from atld.config.vocab import ColorBy, FitMode, Projection
from atld.errors import CheckpointError
from atld.ui.latent_view import MAP_VIEW_CODEC
from atld.ui.runs import RunRef, content_key
from atld.ui.service import view
from atld.ui.view_schemas import COMPARE_PLOTS, DATA_FACTS, DISCRIMINATOR_CHECK, LATENT_PLOT

if TYPE_CHECKING:
    import torch

LATENT_PERMUTATIONS = 100  # the page's MMD permutation test (the embed command's default is 200)


def app_service(workers: int | None = None, kind: str | None = None):
    """The app's compute service as the settings say (ATLD_WORKERS, ATLD_WORKER_KIND,
    ATLD_RESULT_CACHE_MB; results keyed by the data folder, stored under $ATLD_CACHE/views), not
    started. The server makes one (`atld.ui.state.compute_service`); benchmarks fill a machine's
    store with another."""
    from atld.ui.service import ComputeService

    current = settings()
    return ComputeService(current.workers if workers is None else workers,
                          current.worker_kind if kind is None else kind,
                          max_bytes=current.result_cache_mb * 2**20, context=str(current.app_data_root),
                          store_dir=current.cache_dir / "views")


def configure_process() -> None:
    """One intra-op thread per computation (ATLD_TORCH_THREADS): the pool's workers share the
    cores, and on a busy 2-core machine two spinning threads per op made PGD-20 7x slower."""
    import torch

    threads = settings().torch_threads
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@functools.lru_cache(maxsize=8)
def _loaded(path: str, key: str):
    from atld.runs.store import load_checkpoint

    run = load_checkpoint(path, device="cpu")
    if content_key(run.card) != key:
        raise CheckpointError(f"{run.name} changed since the page read it; reload the page")
    return run


def load_run(ref: RunRef):
    """The checkpoint `ref` names, loaded once per process, checked to be the content `ref` keys."""
    return _loaded(ref.path, ref.cache_key)


@functools.lru_cache(maxsize=4)
def _dataset(name: str, root, samples_dir, full: bool):
    from atld.data.loaders import load_for_app

    return load_for_app(name, root, samples_dir)


def dataset(name: str):
    """The app's data of `name` (`load_for_app`: the full data under the data root, else the shipped
    sample), loaded once per process and again when the full data appears (a download)."""
    from atld.data.availability import has_full_data

    current = settings()
    return _dataset(name, current.app_data_root, current.samples_dir, has_full_data(name, current.app_data_root))


def test_images(name: str, indices: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Test images `indices` of dataset `name` as float [N, C, H, W] in [0, 1] and labels [N]."""
    import torch

    from atld.data.loaders import as_float01

    data = dataset(name)
    idx = torch.tensor(indices, dtype=torch.long)
    return as_float01(data.x_test[idx]), data.y_test[idx]


@view()
def attack(ref: RunRef, indices: tuple[int, ...], kind: str, epsilon: float, steps: int, seed: int,
           imt_mode: str):
    """atld.ui.attack_view.attack_view on test images `indices`."""
    from atld.attacks.gradient import AttackConfig
    from atld.ui.attack_view import attack_view

    run = load_run(ref)
    x, y = test_images(run.config.dataset, indices)
    return attack_view(run, x, y, AttackConfig(kind, epsilon, steps=steps), seed=seed, imt_mode=imt_mode)


_MAPS: OrderedDict = OrderedDict()  # this process's latest maps, for the figures drawn from them
_MAPS_LOCK = threading.Lock()


@view()
def latent_map(ref: RunRef, n: int, attack_name: str, epsilon: float, seed: int, space: str, projection: str,
               fit_on: str):
    """atld.latent.latent_map on the first `n` test images: latents, the 2-D map and the gap numbers
    (the `embed` command's pipeline; its disk cache serves a map computed before)."""
    from atld.config.latent import LatentConfig
    from atld.latent import LatentCache
    from atld.latent import latent_map as compute_map

    args = (ref, n, attack_name, epsilon, seed, space, projection, fit_on)
    with _MAPS_LOCK:
        if args in _MAPS:
            return _MAPS[args]
    run = load_run(ref)
    data = dataset(run.config.dataset)
    n = min(n, len(data.y_test))
    config = LatentConfig(attack=attack_name, epsilon=epsilon, projection=projection, fit_on=fit_on, space=space,
                          limit=max(n, 2), seed=seed, permutations=LATENT_PERMUTATIONS)
    m = compute_map(run, data.x_test[:n], data.y_test[:n], config, LatentCache())
    with _MAPS_LOCK:
        _MAPS[args] = m
        while len(_MAPS) > 8:
            _MAPS.popitem(last=False)
    return m


@view(persist=MAP_VIEW_CODEC)
def map_view(ref: RunRef, n: int, attack_name: str, epsilon: float, seed: int, space: str, projection: str,
             fit_on: str):
    """That map as the Latent explorer draws it (`atld.ui.latent_view.MapView`: plain data)."""
    from atld.latent.maps import points_frame
    from atld.ui.latent_view import MapView

    m = latent_map.fn(ref, n, attack_name, epsilon, seed, space, projection, fit_on)
    lat = m.latents
    return MapView(points_frame(m.coords, lat, load_run(ref).spec.labels()), float(lat.accuracy_nat),
                   float(lat.accuracy_pert), m.gap, lat.images_nat.numpy(), lat.images_pert.numpy())


@view()
def map_csv(ref: RunRef, n: int, attack_name: str, epsilon: float, seed: int, space: str, projection: str,
            fit_on: str, meta: tuple[tuple[str, str], ...]) -> str:
    """That map as CSV (`atld.latent.maps.map_csv`, the `embed` command's format) with `meta` first."""
    from atld.latent.maps import map_csv as csv_text

    m = latent_map.fn(ref, n, attack_name, epsilon, seed, space, projection, fit_on)
    return csv_text(m, dict(meta), load_run(ref).spec.labels())


@view(persist=DATA_FACTS)
def data_facts(name: str, full: bool) -> dict:
    """What a page says about dataset `name` before it computes anything: {"n_test": test images,
    "note": the line of a page computed on the shipped sample, or None} (`atld.ui.datasets`).
    `full`: whether the full data is on this server (part of the key: a download changes it)."""
    from atld.ui.datasets import sample_note

    data = dataset(name)
    return {"n_test": len(data.y_test), "note": sample_note(data)}


def _figure_parts(m, projection: str, fit_on: str, space: str):
    """The axis titles (PCA: each axis's share of the variance) and hover thumbnails of a map."""
    from atld.latent.maps import explained_variance
    from atld.ui.latent_view import axis_titles, thumbnails

    explained = explained_variance(*m.latents.latents(space), fit_on) if projection == Projection.PCA else None
    return axis_titles(projection, explained), thumbnails(m.latents.images_nat)


@view(version=2, persist=LATENT_PLOT)
def latent_plot(ref: RunRef, n: int, attack_name: str, epsilon: float, seed: int, space: str, projection: str,
                fit_on: str, color_by: str, title: str, height: int) -> str:
    """The Latent explorer's figure of that map, as plotly JSON (`atld.ui.views.figure_from_json`
    turns it back into a figure without re-validating it): axis titles with the variance each
    PCA axis keeps, a thumbnail per image in the points' customdata for the hover."""
    import plotly.io

    from atld.latent.maps import points_frame
    from atld.ui.latent_view import latent_figure

    m = latent_map.fn(ref, n, attack_name, epsilon, seed, space, projection, fit_on)
    table = points_frame(m.coords, m.latents, load_run(ref).spec.labels())
    axes, images = _figure_parts(m, projection, fit_on, space)
    return plotly.io.to_json(latent_figure(table, color_by, title=title, height=height, axes=axes, images=images),
                             validate=False)


@view(version=2, persist=COMPARE_PLOTS)
def compare_plots(refs: tuple[RunRef, RunRef], titles: tuple[str, str], n: int, attack_name: str, epsilon: float,
                  seed: int, space: str, height: int) -> dict:
    """Two checkpoints side by side. Where their latents share axes (logits of the same width),
    one PCA is fitted on both models' natural points and both are drawn on it with the same axis
    ranges, so a place means the same in both maps; otherwise each model is on its own natural
    map and `note` says why. Returns {"figures": [json, json], "shared": bool, "note": str|None,
    "gaps": [gap, gap]}."""
    import plotly.io

    from atld.latent.maps import points_frame, shared_pca
    from atld.ui.latent_view import axis_titles, latent_figure, shared_map_reason, thumbnails

    maps = [latent_map.fn(ref, n, attack_name, epsilon, seed, space, Projection.PCA, FitMode.NATURAL) for ref in refs]
    zs = [np.concatenate(m.latents.latents(space)) for m in maps]
    note = shared_map_reason(space, (zs[0].shape[1], zs[1].shape[1]))
    if note is None:
        ca, cb, explained = shared_pca(zs[0], zs[1], len(maps[0].latents), len(maps[1].latents))
        coords, axes = [ca, cb], [axis_titles(Projection.PCA, explained)] * 2
    else:
        coords = [m.coords for m in maps]
        axes = [_figure_parts(m, Projection.PCA, FitMode.NATURAL, space)[0] for m in maps]
    figures = []
    for ref, m, xy, ax, title in zip(refs, maps, coords, axes, titles):
        table = points_frame(xy, m.latents, load_run(ref).spec.labels())
        figures.append(latent_figure(table, ColorBy.CLASS, title=title, height=height, axes=ax,
                                     images=thumbnails(m.latents.images_nat)))
    if note is None:  # linked: the same ranges in both
        both = np.concatenate(coords)
        pad = 0.05 * (both.max(axis=0) - both.min(axis=0))
        for fig in figures:
            fig.update_xaxes(range=[both[:, 0].min() - pad[0], both[:, 0].max() + pad[0]])
            fig.update_yaxes(range=[both[:, 1].min() - pad[1], both[:, 1].max() + pad[1]])
    return {"figures": [plotly.io.to_json(f, validate=False) for f in figures], "shared": note is None,
            "note": note, "gaps": [m.gap for m in maps]}


@view()
def accuracy_curve(ref: RunRef, epsilons: tuple[float, ...], attack_name: str, inference: str, limit: int,
                   seed: int) -> list[dict]:
    """atld.evaluate.robust_accuracy_curve (rows as EvalReport.rows)."""
    from atld.evaluate import robust_accuracy_curve

    run = load_run(ref)
    return robust_accuracy_curve(run, list(epsilons), attack=attack_name, inference=inference, limit=limit,
                                 data=dataset(run.config.dataset), seed=seed, device="cpu")


@view(persist=DISCRIMINATOR_CHECK)
def discriminator_check(ref: RunRef, n: int, seed: int) -> dict:
    """atld.evaluate.discriminator_check on the first `n` test images at the dataset's ε (a dict)."""
    from atld.evaluate.discriminator import discriminator_check as check

    run = load_run(ref)
    x, y = test_images(run.config.dataset, tuple(range(min(int(n), len(dataset(run.config.dataset).y_test)))))
    return check(run, x, y, run.spec.epsilon, seed=seed).to_dict()


@view()
def attack_path(ref: RunRef, indices: tuple[int, ...], attack_name: str, epsilon: float, seed: int,
                background_n: int):
    """atld.latent.path_map: the path of test images `indices` along the attack's iterations (and
    the IMT step back for a run with D), on a PCA map of the first `background_n` natural test images."""
    from atld.attacks.registry import attack_from_name
    from atld.data.loaders import as_float01
    from atld.latent.trajectories import path_map

    run = load_run(ref)
    x, y = test_images(run.config.dataset, indices)
    data = dataset(run.config.dataset)
    b = min(int(background_n), len(data.y_test))
    attack = attack_from_name(attack_name, epsilon)
    return path_map(run, x, y, attack, indices, seed, as_float01(data.x_test[:b]), data.y_test[:b])


@view()
def adaptive_lesson(ref: RunRef, indices: tuple[int, ...], epsilon: float, seed: int, mode: str, apgd_steps: int):
    """atld.ui.learn.adaptive_lesson on test images `indices`."""
    from atld.ui.learn import adaptive_lesson as compute_lesson

    run = load_run(ref)
    x, y = test_images(run.config.dataset, indices)
    return compute_lesson(run, x, y, epsilon, mode=mode, seed=seed, apgd_steps=apgd_steps)


@view()
def prepare(ref: RunRef) -> int:
    """Load checkpoint `ref` and its dataset into this worker's caches (each worker keeps its own),
    so that a first request on any worker does not pay for loading them; returns the test size."""
    return len(dataset(load_run(ref).config.dataset).y_test)


@view()
def warm_up(transform: bool = False) -> float:
    """Load UMAP's compiled code into this worker (`atld.latent.warm_up_umap`), at the lowest CPU
    priority (it ran beside the first attacks people make and slowed them 2x); seconds spent."""
    from atld.latent import warm_up_umap
    from atld.priority import at_lowest_priority

    return at_lowest_priority(warm_up_umap, transform)


# ---------------------------------------------------------------------- requests as the pages make them
# The pages (through atld.ui.cached) and the start-up pre-computation build their requests here,
# so that both produce the same keys.

def attack_request(run_dir, indices, kind, epsilon, steps, seed, imt_mode) -> tuple:
    return attack, (RunRef.of(run_dir), tuple(int(i) for i in indices), str(kind), float(epsilon), int(steps),
                    int(seed), str(imt_mode))


def latent_request(run_dir, n, attack_name, epsilon, seed, space, projection, fit_on, of=None) -> tuple:
    """The map's request: `of` is the view computed from it (default `latent_map`: the LatentMap
    itself; `map_view`: what the Latent explorer draws)."""
    return of or latent_map, (RunRef.of(run_dir), int(n), str(attack_name), float(epsilon), int(seed), str(space),
                              str(projection), str(fit_on))


def csv_request(run_dir, n, attack_name, epsilon, seed, space, projection, fit_on, meta: dict) -> tuple:
    _, args = latent_request(run_dir, n, attack_name, epsilon, seed, space, projection, fit_on)
    return map_csv, (*args, tuple((str(k), str(v)) for k, v in meta.items()))


def facts_request(dataset_name) -> tuple:
    from atld.data.availability import has_full_data

    return data_facts, (str(dataset_name), bool(has_full_data(dataset_name, settings().app_data_root)))


def check_request(run_dir, n, seed) -> tuple:
    return discriminator_check, (RunRef.of(run_dir), int(n), int(seed))


def path_request(run_dir, indices, attack_name, epsilon, seed, background_n: int | None = None) -> tuple:
    from atld.ui.latent_view import LATENT_DEFAULTS

    background_n = LATENT_DEFAULTS.path_background if background_n is None else background_n
    return attack_path, (RunRef.of(run_dir), tuple(int(i) for i in indices), str(attack_name), float(epsilon),
                         int(seed), int(background_n))


def plot_request(run_dir, n, attack_name, epsilon, seed, space, projection, fit_on, color_by, title: str = "",
                 height: int = 520) -> tuple:
    _, args = latent_request(run_dir, n, attack_name, epsilon, seed, space, projection, fit_on)
    return latent_plot, (*args, str(color_by), str(title), int(height))


def compare_request(run_dirs, titles, n, attack_name, epsilon, seed, space, height: int) -> tuple:
    return compare_plots, (tuple(RunRef.of(d) for d in run_dirs), tuple(str(t) for t in titles), int(n),
                           str(attack_name), float(epsilon), int(seed), str(space), int(height))


def default_requests(runs, n_test: int, seed: int = 0) -> list[tuple]:
    """The requests of the first views a visitor sees, for the checkpoint the sidebar picks first,
    in the order they are computed: the Latent explorer's PCA map and figure (the slowest page to
    draw), the Attack page, D's check (both pages show it), the two maps side by side, the attack's
    path, then the UMAP map (the Learn page's maps are the same natural maps). `n_test`: the
    dataset's test set size. Computed at start-up, so the first visit of each page is served from
    memory."""
    from atld.data.registry import get_spec
    from atld.ui.attack_view import ATTACK_DEFAULTS as A
    from atld.ui.evaluate_view import D_CHECK_IMAGES
    from atld.ui.latent_view import LATENT_DEFAULTS as L
    from atld.ui.runs import comparison_run, default_run

    run = default_run(runs)
    if run is None:
        return []
    eps = get_spec(run.dataset).epsilon
    n = min(L.n, n_test)
    indices = tuple(i % n_test for i in range(A.first, A.first + A.count))
    common = (L.attack, eps, seed, L.space)
    out = [latent_request(run.path, n, *common, L.projection, L.fit_on, of=map_view),
           plot_request(run.path, n, *common, L.projection, L.fit_on, L.color_by, "", L.height),
           attack_request(run.path, indices, A.kind, eps, A.steps, seed, A.imt_mode)]
    if run.has_discriminator:
        out.append(check_request(run.path, D_CHECK_IMAGES, seed))
    other = comparison_run(runs, run)
    if other is not None:
        out.append(compare_request((run.path, other.path), (run.label, other.label), n, *common, L.compare_height))
    out.append(path_request(run.path, tuple(range(min(L.path_images, n_test))), L.attack, eps, seed))
    return out + [latent_request(run.path, n, *common, Projection.UMAP, L.fit_on, of=map_view),
                  plot_request(run.path, n, *common, Projection.UMAP, L.fit_on, L.color_by, "", L.height)]
