"""The app's views: every computation a page shows, run by a compute worker (`atld.ui.service`).

A view is written once: one frozen request (a dataclass: what to compute) and one function of
it, registered with `@view(...)`. A page builds the request and calls `atld.ui.session.show(view,
request)`, which asks the server's compute service and draws progress and a Cancel button while
it waits; the start-up pre-computation (`default_requests`) builds the same requests, so both
hit the same cache entries. The service keys a request by its fields (a checkpoint, `RunRef`, by
its content, never by its path) and shares its result with every session.

Every view reports progress and stops at a Cancel through `atld.progress` (attacks through
`atld.attacks.progress.notify`, evaluations through their progress events).

Each worker process keeps its own small caches of loaded checkpoints and datasets (`load_run`,
`dataset`); latents, projections and gap numbers also go to the on-disk `LatentCache` (keyed by
content), so a map computed once on a machine is read back by every later server.

This module imports no torch: the server imports it to build requests, and a page whose views
return plain data (numbers, NumPy arrays, tables, plotly JSON) draws without torch in the server.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from atld.config.eval import EvalConfig
from atld.config.latent import LatentConfig
from atld.config.settings import settings
from atld.errors import CheckpointError
from atld.progress import report
from atld.ui.evaluate import D_CHECK_IMAGES
from atld.ui.latent import LATENT_DEFAULTS, MAP_POINTS_CODEC
from atld.ui.view_schemas import (COMPARE_PLOTS, CURVES, DATA_FACTS, DISCRIMINATOR_CHECK, LATENT_PLOT, LEARNED,
                                  SIDE_BY_SIDE)
from atld.ui.runs import RunRef, content_key
from atld.ui.service import view
from atld.vocab import AttackKind, ColorBy, FitMode, InferenceMode, Projection

if TYPE_CHECKING:
    import torch


def app_service(workers: int | None = None, kind: str | None = None):
    """The app's compute service as the settings say (ATLD_WORKERS, ATLD_WORKER_KIND,
    ATLD_RESULT_CACHE_MB; results keyed by the data folder, stored under $ATLD_CACHE/views), not
    started. The server makes one (`atld.ui.server.compute_service`); benchmarks fill a machine's
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


# ---------------------------------------------------------------------- the worker's own caches

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


def first_images(name: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `n` test images (at most the test set) of dataset `name`, as `test_images`."""
    return test_images(name, tuple(range(min(int(n), len(dataset(name).y_test)))))


# ---------------------------------------------------------------------- the views

@dataclass(frozen=True)
class DataFacts:
    """What a page says about dataset `name` before it computes anything. `full`: whether the full
    data is on this server (part of the key: a download changes it); `DataFacts.of(name)` fills it."""
    dataset: str
    full: bool

    @classmethod
    def of(cls, name: str) -> DataFacts:
        from atld.data.availability import has_full_data

        return cls(str(name), bool(has_full_data(name, settings().app_data_root)))


@view(DataFacts, version=2, persist=DATA_FACTS, label="Loading the dataset…")
def data_facts(r: DataFacts) -> dict:
    """{"n_test": test images, "n_train": training images, "note": the line of a page computed on the
    shipped sample, or None} (`atld.ui.datasets`)."""
    from atld.ui.datasets import sample_note

    data = dataset(r.dataset)
    return {"n_test": len(data.y_test), "n_train": len(data.y_train), "note": sample_note(data)}


@dataclass(frozen=True)
class AttackRequest:
    """A gradient attack on test images `indices`, then IMT (`imt_mode`) where the run has D."""
    run: RunRef
    indices: tuple[int, ...]
    kind: AttackKind
    epsilon: float
    steps: int
    seed: int
    imt_mode: InferenceMode


@view(AttackRequest, label="Attacking…")
def attack(r: AttackRequest):
    """atld.ui.attack.attack_result (an `AttackResult`)."""
    from atld.attacks.gradient import AttackConfig
    from atld.ui.attack import attack_result

    run = load_run(r.run)
    x, y = test_images(run.config.dataset, r.indices)
    return attack_result(run, x, y, AttackConfig(r.kind, r.epsilon, steps=r.steps), seed=r.seed, imt_mode=r.imt_mode)


@dataclass(frozen=True)
class MapRequest:
    """A latent map of the first `latent.limit` test images (at most the test set)."""
    run: RunRef
    latent: LatentConfig


_MAPS: OrderedDict = OrderedDict()  # this process's latest maps, for the figures drawn from them
_MAPS_LOCK = threading.Lock()


def _map(r: MapRequest):
    """atld.latent.latent_map (the `embed` command's pipeline; its disk cache serves a map computed
    before), kept for the next figure drawn from it."""
    from atld.latent import LatentCache
    from atld.latent import latent_map as compute_map

    with _MAPS_LOCK:
        if r in _MAPS:
            return _MAPS[r]
    run = load_run(r.run)
    data = dataset(run.config.dataset)
    n = min(r.latent.limit, len(data.y_test))
    m = compute_map(run, data.x_test[:n], data.y_test[:n], dataclasses.replace(r.latent, limit=max(n, 2)),
                    LatentCache())
    with _MAPS_LOCK:
        _MAPS[r] = m
        while len(_MAPS) > 8:
            _MAPS.popitem(last=False)
    return m


@view(MapRequest, label="Computing latents and the map…")
def latent_map(r: MapRequest):
    """The map itself (an `atld.latent.LatentMap`: latents, 2-D coordinates, gap numbers)."""
    return _map(r)


@view(MapRequest, version=2, persist=MAP_POINTS_CODEC, label="Computing latents and the map…")
def map_points(r: MapRequest):
    """That map as the Latent explorer draws it (`atld.ui.latent.MapPoints`: plain data, with the
    map's axis shares and, for logits, the offset's share of their variance)."""
    from atld.latent.maps import points_frame
    from atld.ui.latent import MapPoints

    m = _map(r)
    lat = m.latents
    return MapPoints(points_frame(m.coords, lat, load_run(r.run).spec.labels()), float(lat.accuracy_nat),
                     float(lat.accuracy_pert), m.gap, lat.images_nat.numpy(), lat.images_pert.numpy(),
                     m.explained, m.offset_share)


@dataclass(frozen=True)
class CsvRequest:
    """A map as CSV with `meta` (name, value pairs) first."""
    map: MapRequest
    meta: tuple[tuple[str, str], ...]


@view(CsvRequest, label="Writing the CSV…")
def map_csv(r: CsvRequest) -> str:
    """`atld.latent.maps.map_csv`: the `embed` command's format."""
    from atld.latent.maps import map_csv as csv_text

    return csv_text(_map(r.map), dict(r.meta), load_run(r.map.run).spec.labels())


def _figure_parts(m):
    """The axis titles (PCA: each axis's share of the variance of what the map was fitted on, as
    `latent_map` measured it: logits without their offset) and hover thumbnails of a map."""
    from atld.ui.latent import axis_titles, thumbnails

    return axis_titles(m.config.projection, m.explained), thumbnails(m.latents.images_nat)


@dataclass(frozen=True)
class PlotRequest:
    """The Latent explorer's figure of a map."""
    map: MapRequest
    color_by: ColorBy = LATENT_DEFAULTS.color_by
    title: str = ""
    height: int = LATENT_DEFAULTS.height


@view(PlotRequest, version=4, persist=LATENT_PLOT, label="Drawing the map…")
def latent_plot(r: PlotRequest) -> str:
    """The figure as plotly JSON (`atld.ui.display.figure_from_json` turns it back into a figure
    without re-validating it): axis titles with the variance each PCA axis keeps, a thumbnail per
    image in the points' customdata for the hover."""
    import plotly.io

    from atld.latent.maps import points_frame
    from atld.ui.latent import latent_figure

    m = _map(r.map)
    table = points_frame(m.coords, m.latents, load_run(r.map.run).spec.labels())
    axes, images = _figure_parts(m)
    return plotly.io.to_json(latent_figure(table, r.color_by, title=r.title, height=r.height, axes=axes,
                                           images=images), validate=False)


@dataclass(frozen=True)
class CompareRequest:
    """Two checkpoints' PCA maps of natural latents (`latent`'s projection and fit are ignored)."""
    runs: tuple[RunRef, RunRef]
    titles: tuple[str, str]
    latent: LatentConfig
    height: int = LATENT_DEFAULTS.compare_height


@view(CompareRequest, version=4, persist=COMPARE_PLOTS, label="Drawing the two maps…")
def compare_plots(r: CompareRequest) -> dict:
    """Two checkpoints side by side (`atld.latent.axes.side_by_side`): each model's own PCA of its
    natural points (logits without their offset), in units of its natural cloud's spread, the
    second rotated onto the first; both drawn on the same ranges with equal-aspect axes. Returns
    {"figures": [json, json], "explained": [[pc1, pc2], [pc1, pc2]], "rotated": bool,
    "gaps": [gap, gap]}."""
    import plotly.io

    from atld.latent.axes import side_by_side
    from atld.latent.maps import points_frame
    from atld.ui.latent import latent_figure, thumbnails

    latent = dataclasses.replace(r.latent, projection=Projection.PCA, fit_on=FitMode.NATURAL)
    space = latent.space
    maps = [_map(MapRequest(ref, latent)) for ref in r.runs]
    zs = [np.concatenate(m.latents.latents(space)) for m in maps]
    pair = side_by_side(zs[0], zs[1], len(maps[0].latents), len(maps[1].latents), space)
    both = np.concatenate(pair.coords)
    pad = 0.05 * (both.max(axis=0) - both.min(axis=0))
    ranges = [[float(both[:, j].min() - pad[j]), float(both[:, j].max() + pad[j])] for j in (0, 1)]
    figures = []
    for ref, m, xy, shares, title in zip(r.runs, maps, pair.coords, pair.explained, r.titles):
        table = points_frame(xy, m.latents, load_run(ref).spec.labels())
        axes = tuple(f"PC{i + 1} of this model ({100 * v:.1f} %), natural spreads" for i, v in enumerate(shares))
        fig = latent_figure(table, ColorBy.CLASS, title=title, height=r.height, axes=axes,
                            images=thumbnails(m.latents.images_nat))
        fig.update_xaxes(range=ranges[0])
        fig.update_yaxes(range=ranges[1])
        figures.append(fig)
    return {"figures": [plotly.io.to_json(f, validate=False) for f in figures],
            "explained": [list(e) for e in pair.explained], "rotated": pair.rotated, "gaps": [m.gap for m in maps]}


@dataclass(frozen=True)
class NeighbourRequest:
    """The `k` nearest points to point `point` of a map, in the full latent space of its `space`."""
    map: MapRequest
    point: int
    k: int = 8


@view(NeighbourRequest, label="Finding the nearest neighbours…")
def neighbours(r: NeighbourRequest) -> list[tuple[int, float]]:
    """`atld.ui.latent.nearest_points` over the map's natural and perturbed latents (the point
    table's rows; logits without their offset, which no prediction sees, as the map fits them):
    [(point id, distance)], nearest first."""
    from atld.latent.axes import map_input
    from atld.ui.latent import nearest_points

    m = _map(r.map)
    space = r.map.latent.space
    return nearest_points(np.concatenate([map_input(z, space) for z in m.latents.latents(space)]), r.point, r.k)


def _events_to_progress(event) -> None:
    """An evaluation's progress events (`atld.evaluate.progress`) as the view's progress."""
    report(event.fraction, event.text())


@dataclass(frozen=True)
class EvalRequest:
    """An evaluation (`EvalConfig`: attacks × inference modes on the first `limit` test images)."""
    run: RunRef
    config: EvalConfig


@view(EvalRequest, label="Evaluating…")
def evaluation(r: EvalRequest):
    """atld.evaluate.evaluate (an `EvalReport`: rows, and D's check in its meta)."""
    from atld.evaluate import evaluate

    run = load_run(r.run)
    return evaluate(run, r.config, data=dataset(run.config.dataset), progress=_events_to_progress)


@dataclass(frozen=True)
class CurveRequest:
    """Robust accuracy at each of `epsilons` under one attack and inference mode."""
    run: RunRef
    epsilons: tuple[float, ...]
    attack: str
    inference: InferenceMode
    limit: int
    seed: int


@view(CurveRequest, label="Computing robust accuracy vs ε…")
def accuracy_curve(r: CurveRequest) -> list[dict]:
    """atld.evaluate.robust_accuracy_curve (rows as EvalReport.rows)."""
    from atld.evaluate import robust_accuracy_curve

    run = load_run(r.run)
    return robust_accuracy_curve(run, list(r.epsilons), attack=r.attack, inference=r.inference, limit=r.limit,
                                 data=dataset(run.config.dataset), seed=r.seed, device="cpu",
                                 progress=_events_to_progress)


@dataclass(frozen=True)
class CheckRequest:
    """D's eval-mode check on the first `n` test images at the dataset's ε."""
    run: RunRef
    seed: int
    n: int = D_CHECK_IMAGES


@view(CheckRequest, persist=DISCRIMINATOR_CHECK, label="Checking the discriminator…")
def discriminator_check(r: CheckRequest) -> dict:
    """atld.evaluate.discriminator_check (as a dict)."""
    from atld.evaluate.discriminator import discriminator_check as check

    run = load_run(r.run)
    x, y = first_images(run.config.dataset, r.n)
    return check(run, x, y, run.spec.epsilon, seed=r.seed).to_dict()


@dataclass(frozen=True)
class PathRequest:
    """The path of test images `indices` along a named attack's iterations."""
    run: RunRef
    indices: tuple[int, ...]
    attack: str
    epsilon: float
    seed: int
    background_n: int = LATENT_DEFAULTS.path_background


@view(PathRequest, label="Following the attack step by step…")
def attack_path(r: PathRequest):
    """atld.latent.path_map: the path (and the IMT step back for a run with D) on a PCA map of the
    first `background_n` natural test images (an `atld.latent.PathMap`)."""
    from atld.attacks.registry import attack_from_name
    from atld.latent.trajectories import path_map

    run = load_run(r.run)
    x, y = test_images(run.config.dataset, r.indices)
    background_x, background_y = first_images(run.config.dataset, r.background_n)
    return path_map(run, x, y, attack_from_name(r.attack, r.epsilon), r.indices, r.seed, background_x, background_y)


@dataclass(frozen=True)
class LessonRequest:
    """The adaptive attack through IMT beside the non-adaptive one, on test images `indices`."""
    run: RunRef
    indices: tuple[int, ...]
    epsilon: float
    seed: int
    mode: InferenceMode = InferenceMode.IMT
    apgd_steps: int = 100


@view(LessonRequest, label="Attacking through IMT (adaptive) and the bare classifier (non-adaptive)…")
def adaptive_lesson(r: LessonRequest):
    """atld.ui.learn.adaptive_lesson (an `AdaptiveLesson`)."""
    from atld.ui.learn import adaptive_lesson as compute_lesson

    run = load_run(r.run)
    x, y = test_images(run.config.dataset, r.indices)
    return compute_lesson(run, x, y, r.epsilon, mode=r.mode, seed=r.seed, apgd_steps=r.apgd_steps)


@view(RunRef, label="Loading the checkpoint…")
def prepare(ref: RunRef) -> int:
    """Load checkpoint `ref` and its dataset into this worker's caches (each worker keeps its own),
    so that a first request on any worker does not pay for loading them; returns the test size."""
    return len(dataset(load_run(ref).config.dataset).y_test)


@view(bool, label="Loading UMAP…")
def warm_up(transform: bool = False) -> float:
    """Load UMAP's compiled code into this worker (`atld.latent.warm_up_umap`), at the lowest CPU
    priority (it ran beside the first attacks people make and slowed them 2x); seconds spent."""
    from atld.latent import warm_up_umap
    from atld.priority import at_lowest_priority

    return at_lowest_priority(warm_up_umap, transform)


# ---------------------------------------------------------------------- what a first visitor sees

def page_latent(limit: int, attack: str, epsilon: float, seed: int, space, projection=LATENT_DEFAULTS.projection,
                fit_on=LATENT_DEFAULTS.fit_on) -> LatentConfig:
    """The `LatentConfig` of the app's maps (`LATENT_DEFAULTS.permutations` for the MMD test)."""
    return LatentConfig(attack=attack, epsilon=float(epsilon), projection=projection, fit_on=fit_on, space=space,
                        limit=max(int(limit), 2), seed=int(seed), permutations=LATENT_DEFAULTS.permutations)


def default_requests(runs, n_test: int, seed: int = 0) -> list[tuple]:
    """(view, request) of the first views a visitor sees, for the checkpoint the sidebar picks
    first, in the order they are computed: the Latent explorer's PCA map and figure (the slowest
    page to draw), the Attack page, D's check (both pages show it), the two maps side by side, the
    attack's path, then the UMAP map (the Learn page's maps are the same natural maps). `n_test`:
    the dataset's test set size. Computed at start-up, so the first visit of each page is served
    from memory."""
    from atld.data.registry import get_spec
    from atld.ui.attack import ATTACK_DEFAULTS as A
    from atld.ui.runs import comparison_run, default_run

    L = LATENT_DEFAULTS
    run = default_run(runs)
    if run is None:
        return []
    ref = RunRef.of(run.path)
    eps = get_spec(run.dataset).epsilon
    pca = MapRequest(ref, page_latent(min(L.n, n_test), L.attack, eps, seed, L.space))
    umap = MapRequest(ref, dataclasses.replace(pca.latent, projection=Projection.UMAP))
    indices = tuple(i % n_test for i in range(A.first, A.first + A.count))
    out = [(map_points, pca), (latent_plot, PlotRequest(pca)),
           (attack, AttackRequest(ref, indices, A.kind, eps, A.steps, seed, A.imt_mode))]
    if run.has_discriminator:
        out.append((discriminator_check, CheckRequest(ref, seed)))
    other = comparison_run(runs, run)
    if other is not None:
        out.append((compare_plots, CompareRequest((ref, RunRef.of(other.path)), (run.label, other.label),
                                                  pca.latent)))
    out.append((attack_path, PathRequest(ref, tuple(range(min(L.path_images, n_test))), L.attack, eps, seed)))
    return out + [(map_points, umap), (latent_plot, PlotRequest(umap))]


# ---------------------------------------------------------------------- the Learn page's own views

@dataclass(frozen=True)
class SideBySideRequest:
    """Several checkpoints' maps of the same test images side by side (`latent`: the first
    `limit` images under its attack; its projection and fit are ignored): the first checkpoint is
    the reference the others are turned onto."""
    runs: tuple[RunRef, ...]
    titles: tuple[str, ...]
    latent: LatentConfig
    height: int = 330


@view(SideBySideRequest, version=2, persist=SIDE_BY_SIDE, label="Drawing the maps side by side…")
def side_by_side_plots(r: SideBySideRequest) -> dict:
    """Each model its own PCA of its logits without the softmax-invariant offset, in units of its
    own natural spread, turned onto the first model's by Procrustes (`atld.latent.axes.side_by_side`),
    equal-aspect axes with tick numbers. Returns {"figures": [plotly json per model], "explained":
    [[PC1 share, PC2 share] per model], "warnings": [`axis_warning` or None per model], "gaps": [gap
    dict per model], "accuracy": [[natural, perturbed] per model], "n": images per map}."""
    import plotly.io

    from atld.latent.axes import axis_warning, side_by_side
    from atld.latent.maps import points_frame
    from atld.ui.latent import latent_figure, thumbnails

    latent = dataclasses.replace(r.latent, projection=Projection.PCA, fit_on=FitMode.NATURAL)
    maps = [_map(MapRequest(ref, latent)) for ref in r.runs]
    zs = [np.concatenate(m.latents.latents(latent.space)) for m in maps]
    coords, explained = [], []
    for i, (m, z) in enumerate(zip(maps, zs)):
        both = side_by_side(zs[0], z, len(maps[0].latents), len(m.latents), latent.space)
        if i == 0:
            coords.append(both.coords[0])
        else:
            coords.append(both.coords[1])
        explained.append(both.explained[1])
    both = np.concatenate(coords)
    low, high = both.min(axis=0), both.max(axis=0)
    pad = 0.05 * np.maximum(high - low, 1e-9)
    figures = []
    for ref, m, xy, ex, title in zip(r.runs, maps, coords, explained, r.titles):
        table = points_frame(xy, m.latents, load_run(ref).spec.labels())
        axes = (f"PC1 ({100 * ex[0]:.1f} %), natural spreads", f"PC2 ({100 * ex[1]:.1f} %)")
        fig = latent_figure(table, ColorBy.CLASS, title=title, height=r.height, axes=axes,
                            images=thumbnails(m.latents.images_nat))
        fig.update_layout(showlegend=False, margin=dict(l=40, r=10, t=36, b=40, autoexpand=False),
                          title=dict(font=dict(size=14)))
        # the same ranges in every map, one unit as long on both axes (plotly shrinks the longer one's domain)
        fig.update_xaxes(showticklabels=True, range=[low[0] - pad[0], high[0] + pad[0]], zeroline=False)
        fig.update_yaxes(showticklabels=True, range=[low[1] - pad[1], high[1] + pad[1]], scaleanchor="x",
                         scaleratio=1, constrain="domain", zeroline=False)
        figures.append(plotly.io.to_json(fig, validate=False))
    return {"figures": figures, "explained": [list(e) for e in explained],
            "warnings": [axis_warning(e) for e in explained], "gaps": [m.gap for m in maps],
            "accuracy": [[float(m.latents.accuracy_nat), float(m.latents.accuracy_pert)] for m in maps],
            "n": len(maps[0].latents)}


@dataclass(frozen=True)
class LearnedRequest:
    """"What D really learned" on the first `n` test images (PGD-20 at the dataset's ε)."""
    run: RunRef
    n: int
    seed: int
    shares: tuple[float, ...] = tuple(k / 10 for k in range(11))


@view(LearnedRequest, persist=LEARNED, label="Scoring the same images in different batches…")
def what_d_learned(r: LearnedRequest) -> dict:
    """atld.evaluate.discriminator.what_d_learned (plain data: the per-batch / per-image AUCs, the
    scores, the share curve, IMT vs the reversed and a random step)."""
    from atld.evaluate.discriminator import what_d_learned as learned

    run = load_run(r.run)
    x, y = first_images(run.config.dataset, r.n)
    report(0.0, "PGD-20, D's own perturbation, the share curve and IMT's step…")
    return learned(run, x, y, seed=r.seed, shares=r.shares)


@dataclass(frozen=True)
class PathImagesRequest:
    """The images themselves along an attack's path (the same attack, images and seed as a
    `PathRequest`, so the same iterates)."""
    run: RunRef
    indices: tuple[int, ...]
    attack: str
    epsilon: float
    seed: int


@view(PathImagesRequest, label="Recording the attack's images…")
def path_images(r: PathImagesRequest) -> np.ndarray:
    """float32 [S+1, N, C, H, W] in [0, 1]: step 0 the natural images, step k the attack's k-th
    iterate (as `atld.latent.trajectories.attack_path` records its latents: same generator)."""
    import torch

    from atld.attacks.gradient import run_attack
    from atld.attacks.registry import attack_from_name
    from atld.models.common import eval_mode

    run = load_run(r.run)
    x, y = test_images(run.config.dataset, r.indices)
    attack = attack_from_name(r.attack, r.epsilon)
    f, d = run.classifier, run.discriminator
    iterates = [x]
    with eval_mode(*([f] if d is None else [f, d])):
        generator = torch.Generator(device="cpu").manual_seed(r.seed)

        def step(k: int, xk) -> None:
            iterates.append(xk.detach().cpu())
            report(k / attack.num_steps, f"{attack.label}: step {k}/{attack.num_steps}")

        last = run_attack(f, x, y, attack, generator, on_step=step)
    while len(iterates) < attack.num_steps + 1:
        iterates.append(last.detach().cpu())
    return torch.stack(iterates).float().numpy()


# ---------------------------------------------------------------------- the Evaluate page's curves, all at once

@dataclass(frozen=True)
class CurvesRequest:
    """Several robust-accuracy curves (`CurveRequest`: one checkpoint × attack × inference each),
    computed one after the other as one view: the page's chart, its progress (curve k of N and
    the time left) and its cache entry (a shared address that names the same curves is drawn at once)."""
    curves: tuple[CurveRequest, ...]


def curves_progress(k: int, n: int, fraction: float, eta: float | None, elapsed_done: float,
                    elapsed_now: float) -> tuple[float, str]:
    """(fraction of all N curves, "k / N attack runs · about m:ss left"): curve k (1-based) is
    `fraction` done with its own estimate `eta`; the curves after it are estimated at the mean
    time of the curves finished so far (`elapsed_done` seconds for k − 1 of them), else at this
    curve's projected time."""
    from atld.evaluate.progress import clock

    overall = (k - 1 + fraction) / n
    per_curve = elapsed_done / (k - 1) if k > 1 else (elapsed_now + eta if eta is not None else None)
    left = None if eta is None or per_curve is None else eta + per_curve * (n - k)
    text = f"{k - 1} / {n} attack runs" + (f" · about {clock(left)} left" if left is not None else "")
    return overall, text


@view(CurvesRequest, persist=CURVES, label="Robust accuracy vs ε:")
def accuracy_curves(r: CurvesRequest) -> list[list[dict]]:
    """`accuracy_curve` of each request, in order (rows per curve)."""
    import time

    from atld.evaluate import robust_accuracy_curve

    out, done_seconds, n = [], 0.0, len(r.curves)
    for k, c in enumerate(r.curves, start=1):
        start = time.perf_counter()

        def on_event(event, k=k, start=start, before=done_seconds):
            report(*curves_progress(k, n, event.fraction, event.eta, before, time.perf_counter() - start))

        report(*curves_progress(k, n, 0.0, None, done_seconds, 0.0))
        run = load_run(c.run)
        out.append(robust_accuracy_curve(run, list(c.epsilons), attack=c.attack, inference=c.inference, limit=c.limit,
                                         data=dataset(run.config.dataset), seed=c.seed, device="cpu",
                                         progress=on_event))
        done_seconds += time.perf_counter() - start
    return out


# ---------------------------------------------------------------------- bring your own model (Home)

@dataclass(frozen=True)
class ImportRequest:
    """Import the uploaded weights saved at `upload` (the page wrote them; `sha256` keys their
    content) as run `name` under `runs_dir` (`atld.runs.importer.import_weights`)."""
    upload: str
    sha256: str
    file_name: str
    arch: str
    dataset: str
    normalization: str
    name: str
    runs_dir: str


@view(ImportRequest, label="Importing the model…")
def import_model(r: ImportRequest) -> dict:
    """The import, as plain data: {"path", "name", "format", "normalization", "warning",
    "accuracy", "sample", "seconds", "dropped"}. The uploaded file is removed afterwards,
    imported or refused."""
    import os

    from atld.runs.importer import import_weights

    def on_event(event) -> None:
        report(event.fraction, f"{event.stage} {event.done}/{event.total}")

    try:
        result = import_weights(r.upload, r.arch, r.dataset, r.normalization, name=r.name, runs_root=r.runs_dir,
                                source_name=r.file_name, command=f"app upload ({r.file_name})", progress=on_event)
    finally:
        try:
            os.unlink(r.upload)
        except OSError:
            pass
    check = result.check
    return {"path": str(result.path), "name": result.name, "format": str(result.format),
            "normalization": result.normalization.name, "warning": result.warning, "dropped": result.dropped,
            "accuracy": None if check is None else check.accuracy, "sample": None if check is None else check.sample,
            "seconds": result.seconds}


@dataclass(frozen=True)
class CostRequest:
    """What a model of `arch` costs per test image on this machine's CPU."""
    arch: str
    dataset: str
    threads: int = 1


@view(CostRequest, label="Estimating the time…")
def work_cost(r: CostRequest) -> dict:
    """{work: seconds per image} for each kind of `atld.runs.importer.WORK_PASSES` (a rough
    figure from the architecture's FLOP count, `estimate_seconds`)."""
    from atld.runs.importer import WORK_PASSES, estimate_seconds

    return {work: estimate_seconds(r.arch, r.dataset, 1, work, threads=r.threads) for work in WORK_PASSES}
