"""The pages' computations, through the shared compute service (`atld.ui.state.compute`): each
wrapper names its view (`atld.ui.compute`), the slot it occupies in the session (a newer request
from the same slot supersedes an older one) and what the progress bar says. Results are shared by
all sessions, keyed by the checkpoint's content and every argument; treat them as read-only."""

from __future__ import annotations

from atld.ui import compute
from atld.ui.state import compute as run
from atld.ui.views import figure_from_json


def attack(path: str, model_hash: str, indices: tuple[int, ...], kind: str, epsilon: float, steps: int,
           seed: int, imt_mode: str):
    """atld.ui.attack_view.attack_view on test images `indices` (an `AttackView`)."""
    return run(*compute.attack_request(path, indices, kind, epsilon, steps, seed, imt_mode), slot="attack",
               label="Attacking…")


def _map(of, path, n, attack_name, epsilon, seed, space, projection, fit_on, on_cancel):
    """A map request of the page's "latent_map" slot (`of`: the view computed from the map); a
    projection other than PCA can be cancelled (`on_cancel` runs when it is)."""
    request = compute.latent_request(path, n, attack_name, epsilon, seed, space, projection, fit_on, of=of)
    return run(*request, slot="latent_map", label=f"Computing latents and the {projection.upper()} map…",
               cancellable=projection != "pca", on_cancel=on_cancel)


def latent_map(path: str, model_hash: str, n: int, attack_name: str, epsilon: float, seed: int, space: str,
               projection: str, fit_on: str, on_cancel=None):
    """atld.latent.latent_map on the first `n` test images: latents, the 2-D map and the gap numbers."""
    return _map(None, path, n, attack_name, epsilon, seed, space, projection, fit_on, on_cancel)


def map_view(path: str, model_hash: str, n: int, attack_name: str, epsilon: float, seed: int, space: str,
             projection: str, fit_on: str, on_cancel=None):
    """The Latent explorer's map of the first `n` test images (`atld.ui.latent_view.MapView`: the
    point table, accuracies, gap numbers and images; plain data)."""
    return _map(compute.map_view, path, n, attack_name, epsilon, seed, space, projection, fit_on, on_cancel)


def map_csv(path: str, n: int, attack_name: str, epsilon: float, seed: int, space: str, projection: str,
            fit_on: str, meta: dict) -> str:
    """That map as CSV (the `embed` command's format), for a download button: waits for the
    service without drawing anything (it runs outside the page's script)."""
    from atld.ui.state import compute_service

    v, args = compute.csv_request(path, n, attack_name, epsilon, seed, space, projection, fit_on, meta)
    return compute_service().submit(v, args).result()


def data_facts(dataset: str) -> dict:
    """{"n_test", "note"} of dataset `dataset` (`atld.ui.compute.data_facts`)."""
    return run(*compute.facts_request(dataset), slot=f"data_facts:{dataset}", label="Loading the dataset…")


def latent_plot(path: str, model_hash: str, n: int, attack_name: str, epsilon: float, seed: int, space: str,
                projection: str, fit_on: str, color_by: str, title: str = "", height: int = 520):
    """The Latent explorer's figure of that map (a plotly Figure)."""
    request = compute.plot_request(path, n, attack_name, epsilon, seed, space, projection, fit_on, color_by, title,
                                   height)
    return figure_from_json(run(*request, slot=f"latent_plot:{title}", label="Drawing the map…"))


def compare_plots(paths: tuple[str, str], titles: tuple[str, str], n: int, attack_name: str, epsilon: float,
                  seed: int, space: str, height: int) -> dict:
    """Two checkpoints' maps side by side (`atld.ui.compute.compare_plots`): figures as plotly JSON,
    whether they share one projection, and both gap numbers."""
    request = compute.compare_request(paths, titles, n, attack_name, epsilon, seed, space, height)
    return run(*request, slot="latent_compare", label="Drawing the two maps…")


def accuracy_curve(path: str, model_hash: str, epsilons: tuple[float, ...], attack_name: str, inference: str,
                   limit: int, seed: int) -> list[dict]:
    """atld.evaluate.robust_accuracy_curve (rows as EvalReport.rows)."""
    from atld.ui.runs import RunRef

    args = (RunRef.of(path), tuple(float(e) for e in epsilons), str(attack_name), str(inference), int(limit), int(seed))
    return run(compute.accuracy_curve, args, slot=f"accuracy_curve:{path}", label="Computing robust accuracy vs ε…")


def map_ready(path: str, model_hash: str, n: int, attack_name: str, epsilon: float, seed: int, space: str,
              projection: str, fit_on: str) -> bool:
    """Whether that map is computed already (then the page shows it without asking first)."""
    from atld.ui.state import compute_service

    return compute_service().cached(*compute.latent_request(path, n, attack_name, epsilon, seed, space, projection,
                                                            fit_on, of=compute.map_view))


def discriminator_check(path: str, model_hash: str, n: int, seed: int) -> dict:
    """atld.evaluate.discriminator_check on the first `n` test images at the dataset's ε (a dict)."""
    return run(*compute.check_request(path, n, seed), slot=f"discriminator_check:{path}",
               label="Checking the discriminator…")


def attack_path(path: str, model_hash: str, indices: tuple[int, ...], attack_name: str, epsilon: float, seed: int,
                background_n: int | None = None):
    """atld.latent.path_map for test images `indices` (an `atld.latent.PathMap`)."""
    return run(*compute.path_request(path, indices, attack_name, epsilon, seed, background_n),
               slot=f"attack_path:{path}", label="Following the attack step by step…")


def adaptive_lesson(path: str, model_hash: str, indices: tuple[int, ...], epsilon: float, seed: int,
                    mode: str = "atld", apgd_steps: int = 100):
    """atld.ui.learn.adaptive_lesson on test images `indices` (an `AdaptiveLesson`)."""
    from atld.ui.runs import RunRef

    args = (RunRef.of(path), tuple(int(i) for i in indices), float(epsilon), int(seed), str(mode), int(apgd_steps))
    return run(compute.adaptive_lesson, args, slot=f"adaptive_lesson:{path}",
               label="Attacking through IMT (adaptive) and the bare classifier (non-adaptive)…")
