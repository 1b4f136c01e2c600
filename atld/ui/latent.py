"""The Latent explorer's figure, selection and gap summary, built without Streamlit.

The points are the rows of `atld.latent.maps.points_frame` (the same table the CSV export and
the `embed` command write): row i is point i; i < N is natural image i, N + i its perturbed copy.
Every plotly point carries its id in `customdata[0]`, because plotly's point indices are per
trace and the traces are split by class and set."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atld.vocab import ColorBy, FitMode, LatentSpace, PointSet, Projection

COLOR_MODES = tuple(ColorBy)
KINDS = tuple(PointSet)


@dataclass(frozen=True)
class LatentDefaults:
    """What the Latent explorer shows first (its first views, computed ahead at start-up and
    kept on disk); ε is the dataset's, the seed the sidebar's."""
    attack: str = "pgd20"
    n: int = 300  # test images (at most the test set)
    space: LatentSpace = LatentSpace.LOGITS
    color_by: ColorBy = ColorBy.CLASS
    fit_on: FitMode = FitMode.JOINT
    projection: Projection = Projection.PCA
    height: int = 520  # pixels, the main map
    compare_height: int = 420  # pixels, each of the two side-by-side maps
    path_images: int = 12  # the attack's path, step by step: the first test images followed
    path_background: int = 300  # natural test images of the path's PCA map
    permutations: int = 100  # the MMD permutation test's (the embed command's default is 200)


LATENT_DEFAULTS = LatentDefaults()


@dataclass(frozen=True)
class MapPoints:
    """What the Latent explorer draws of a map, in plain data (no torch: the page draws it without
    importing torch in the server). table: `atld.latent.maps.points_frame`; accuracies of the
    natural and the perturbed images; gap: `gap_numbers`; images_*: float32 [N, C, H, W] in
    [0, 1], what a selection shows. Stored on disk by `MAP_POINTS_CODEC`."""
    table: object  # pandas.DataFrame
    accuracy_nat: float
    accuracy_pert: float
    gap: dict
    images_nat: np.ndarray
    images_pert: np.ndarray
    explained: tuple[float, ...] | None = None  # PCA: each axis's share of what the map was fitted on
    offset_share: float | None = None  # logits: the variance share the map dropped as the softmax offset

    def __len__(self) -> int:
        return len(self.images_nat)


class MapPointsCodec:
    """A `MapPoints` as one compressed `.npz`: the table's columns, both image arrays and a JSON
    string of the accuracies and gap numbers; read back only if every part fits the others."""
    suffix = ".npz"

    def encode(self, points: MapPoints) -> bytes:
        import json

        from atld.fileio import npz_bytes

        meta = {"accuracy_nat": points.accuracy_nat, "accuracy_pert": points.accuracy_pert, "gap": points.gap,
                "explained": None if points.explained is None else list(points.explained),
                "offset_share": points.offset_share}
        # text columns as fixed-width strings: object arrays would need pickle to read back
        columns = {f"col_{c}": (col.astype(str) if col.dtype == object else col)
                   for c, col in ((c, points.table[c].to_numpy()) for c in points.table.columns)}
        return npz_bytes({**columns, "images_nat": points.images_nat, "images_pert": points.images_pert,
                          "meta": np.array(json.dumps(meta, allow_nan=True))})

    def decode(self, data: bytes) -> MapPoints:
        import json

        import pandas as pd

        from atld.config.latent import POINT_COLUMNS
        from atld.fileio import parse_npz
        from atld.ui.result_store import MAX_ENTRY_BYTES

        arrays = parse_npz(data, MAX_ENTRY_BYTES)
        meta = json.loads(str(arrays["meta"]))
        images_nat, images_pert = arrays["images_nat"], arrays["images_pert"]
        n = len(images_nat)
        if not (images_nat.ndim == 4 and images_pert.shape == images_nat.shape and images_nat.dtype == np.float32
                and all(arrays[f"col_{c}"].shape == (2 * n,) for c in POINT_COLUMNS)
                and isinstance(meta.get("gap"), dict)):
            raise ValueError("a stored map whose parts do not fit together")
        from atld.ui.view_schemas import check_map_view

        check_map_view(arrays, meta)
        table = pd.DataFrame({c: arrays[f"col_{c}"] for c in POINT_COLUMNS}, columns=list(POINT_COLUMNS))
        explained, share = meta.get("explained"), meta.get("offset_share")
        return MapPoints(table, float(meta["accuracy_nat"]), float(meta["accuracy_pert"]), meta["gap"], images_nat,
                         images_pert, None if explained is None else tuple(float(v) for v in explained),
                         None if share is None else float(share))


MAP_POINTS_CODEC = MapPointsCodec()

SELECTION_PAGE = 24  # thumbnails per page of the selection


def thumbnails(images) -> list[str]:
    """Each image (float [N, C, H, W] in [0, 1]) as a small PNG data URI at its own resolution
    (the browser enlarges it without smoothing): what the map's hover shows."""
    import base64
    import io

    from PIL import Image

    from atld.ui.display import to_display

    out = []
    for pic in to_display(images, scale=1):
        buf = io.BytesIO()
        Image.fromarray(pic).save(buf, format="PNG", optimize=True)
        out.append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"))
    return out


def axis_titles(projection: str, explained: tuple[float, float] | None) -> tuple[str, str]:
    """Axis titles of a map: PCA axes carry their share of the variance; UMAP's have no units."""
    if projection == Projection.PCA and explained is not None:
        return tuple(f"PC{i + 1} ({100 * r:.1f} % of variance)" for i, r in enumerate(explained))
    name = str(projection).upper()
    return f"{name} 1 (no units: only neighbourhoods count)", f"{name} 2 (no units)"


def latent_figure(table, color_by: str = ColorBy.CLASS, title: str = "", height: int = 520,
                  axes: tuple[str, str] = ("", ""), images: list[str] | None = None):
    """A plotly scatter of a point table. Natural points are circles, perturbed are crosses;
    colour by true class (one trace per class × set), by predicted class, by D score (a colour
    scale) or by correctness. `images`: a data URI per image index (`thumbnails`), carried in
    `customdata[2]` for the page's hover thumbnail.

    The margins are fixed (`margin.autoexpand` off): a legend or colour bar that pushes the margins
    makes plotly lay the whole figure out twice, which was half of the browser's drawing time of
    the map. So the legend is a column right of the plot, one entry per class (a class's natural
    and perturbed traces share it; the symbols are explained beside the map), the colour bar sits
    under it in the same fixed margin, and both start below the toolbar."""
    import plotly.graph_objects as go
    from atld.latent.palette import class_colour

    fig = go.Figure()
    symbols = {PointSet.NATURAL: "circle", PointSet.PERTURBED: "x"}

    def add(rows, name, color=None, legendgroup=None, showlegend=True, **marker):
        pics = [images[i] if images is not None and 0 <= i < len(images) else "" for i in rows["index"].values]
        fig.add_trace(go.Scatter(
            x=rows["x"], y=rows["y"], mode="markers", name=name, legendgroup=legendgroup, showlegend=showlegend,
            customdata=np.stack([rows.index.values, rows["index"].values, np.asarray(pics, dtype=object)], axis=1),
            text=[f"{k} #{i}: label {lab}, pred {p}" + ("" if np.isnan(d) else f", D {d:.2f}")
                  for k, i, lab, p, d in zip(rows["set"], rows["index"], rows["label_name"], rows["pred_name"],
                                             rows["d_natural"])],
            hovertemplate="%{text}<extra></extra>",
            marker=dict(color=color, size=7, symbol=symbols[rows["set"].iloc[0]], opacity=0.75, **marker)))

    if color_by == ColorBy.D_SCORE and table["d_natural"].notna().any():
        for kind in KINDS:
            rows = table[table["set"] == kind]
            add(rows, kind, color=rows["d_natural"], colorscale="RdBu", cmin=0.0, cmax=1.0,
                showscale=kind == PointSet.NATURAL,
                colorbar=dict(title=dict(text="D: P(natural)", side="right"), thickness=12, len=0.7, x=1.02,
                              xanchor="left", y=0, yanchor="bottom"))
    elif color_by == ColorBy.CORRECT:
        for kind in KINDS:
            for ok, colour in ((True, "#2a9d8f"), (False, "#e63946")):
                rows = table[(table["set"] == kind) & (table["correct"] == ok)]
                if len(rows):
                    add(rows, f"{kind}, {'correct' if ok else 'wrong'}", color=colour)
    else:
        column, name_column = ("pred", "pred_name") if color_by == ColorBy.PREDICTED else ("label", "label_name")
        prefix = "pred " if color_by == ColorBy.PREDICTED else ""
        for c in sorted(table[column].unique()):
            in_legend = True
            for kind in KINDS:
                rows = table[(table[column] == c) & (table["set"] == kind)]
                if len(rows):
                    name = rows[name_column].iloc[0]
                    add(rows, f"{prefix}{name}", color=class_colour(c), legendgroup=str(name),
                        showlegend=in_legend)
                    in_legend = False
    names = [t.name for t in fig.data if t.showlegend is not False]
    # The legend column's width, from its longest entry (about 6 px per character at size 10).
    right = 16 + max([40 + 6 * len(n) for n in names] + [70 if color_by == ColorBy.D_SCORE else 0])
    fig.update_layout(title=dict(text=title, y=0.98, yanchor="top") if title else None, height=height,
                      margin=dict(l=MAP_MARGIN[0], r=min(right, 220), t=40 if title else 30, b=MAP_MARGIN[1],
                                  autoexpand=False),
                      dragmode="select",
                      legend=dict(itemsizing="constant", font=dict(size=10), orientation="v", x=1.02,
                                  xanchor="left", y=1, yanchor="top"),
                      xaxis=dict(title=dict(text=axes[0], font=dict(size=12)), **MAP_AXIS),
                      yaxis=dict(title=dict(text=axes[1], font=dict(size=12)), **MAP_AXIS),
                      modebar=dict(orientation="h"))
    return equal_aspect(fig)


# Every map has tick numbers and equal units on both axes: a map stretched per axis draws a thin
# cloud as a round one. The left and bottom margins hold the tick numbers and the axis titles.
MAP_AXIS = dict(showticklabels=True, ticks="outside", ticklen=3, tickfont=dict(size=10), zeroline=False)
MAP_MARGIN = (58, 48)  # left, bottom (pixels)


def equal_aspect(fig):
    """`fig` with one unit as long on the y axis as on the x axis (plotly's scaleanchor: the
    ranges widen to fill the plot, never distort the cloud) and tick numbers on both."""
    fig.update_yaxes(scaleanchor="x", scaleratio=1, showticklabels=True)
    fig.update_xaxes(showticklabels=True, constrain="range")
    return fig


def selection_order(table, ids) -> list[int]:
    """Selected point ids, the interesting ones first: perturbed and misclassified, then natural
    and misclassified, then perturbed, then natural; by id within each group."""
    ids = [int(i) for i in dict.fromkeys(ids) if 0 <= int(i) < len(table)]
    perturbed = (table["set"] == PointSet.PERTURBED).to_numpy()
    wrong = ~table["correct"].to_numpy(dtype=bool)
    return sorted(ids, key=lambda i: (not (perturbed[i] and wrong[i]), not wrong[i], not perturbed[i], i))


def page_of(ids: list, page: int, size: int = SELECTION_PAGE) -> tuple[list, int, int]:
    """(the ids on `page` (1-based, clamped), that page, the number of pages)."""
    pages = max(1, -(-len(ids) // size))
    page = min(max(1, int(page)), pages)
    return ids[(page - 1) * size:page * size], page, pages


def color_note(color_by: str, has_discriminator: bool) -> str | None:
    """Why a colour mode cannot be shown for this checkpoint, or None."""
    if color_by == ColorBy.D_SCORE and not has_discriminator:
        return ("Colour by D score needs a checkpoint with a discriminator (an ATLD run); this one has none, "
                "so the map is coloured by class.")
    return None


def selected_ids(selection) -> list[int]:
    """Point ids from a Streamlit plotly selection (`event.selection` or its dict), in order,
    without repeats. Points without customdata are ignored."""
    points = (selection or {}).get("points", []) if isinstance(selection, dict) else getattr(selection, "points", [])
    ids = []
    for p in points or []:
        data = p.get("customdata") if isinstance(p, dict) else None
        if data is None or (hasattr(data, "__len__") and len(data) == 0):
            continue
        if isinstance(data, dict):  # the browser may send an array as {"0": id, "1": image}
            data = [data[k] for k in sorted(data, key=int)]
        ids.append(int(data[0]) if isinstance(data, (list, tuple)) else int(data))
    return list(dict.fromkeys(ids))


def gap_summary(gap: dict) -> list[tuple[str, str, str]]:
    """(name, value, meaning) rows for the gap numbers beside the plot."""
    def fmt(v, pct=False):
        if v is None:
            return "—"
        return f"{100 * v:.1f} %" if pct else f"{v:.3g}"

    from atld.evaluate.stats import p_value_text

    rows = []
    if gap.get("discriminator_auc") is not None:
        rows.append(("D's AUC, per image", fmt(gap["discriminator_auc"]),
                     "0.5: chance; below 0.5: inverted (D scores attacked latents as more natural than clean ones)"))
    rows.append(("two-sample test accuracy", fmt(gap.get("two_sample_accuracy"), True),
                 f"50 %: no gap ({p_value_text(gap.get('two_sample_p_value'))})"))
    rows.append(("MMD²", fmt(gap.get("mmd2")), f"0: same distribution ({p_value_text(gap.get('mmd_p_value'))})"))
    rows.append(("kNN mixing", fmt(gap.get("knn_mixing"), True),
                 f"share of natural neighbours of perturbed points; {fmt(gap.get('knn_mixing_expected'), True)} "
                 "if perfectly mixed"))
    return rows


def gap_table(gaps: dict[str, dict]):
    """The gap numbers of several checkpoints as one table: a row per measure, a column per
    checkpoint (`gaps`: checkpoint label -> `gap_numbers`), plus what each value means."""
    import pandas as pd

    columns = {label: [value for _, value, _ in gap_summary(g)] for label, g in gaps.items()}
    names = {label: [name for name, _, _ in gap_summary(g)] for label, g in gaps.items()}
    measures = list(dict.fromkeys(n for ns in names.values() for n in ns))
    frame = pd.DataFrame({"measure": measures})
    for label, values in columns.items():
        lookup = dict(zip(names[label], values))
        frame[label] = [lookup.get(m, "— (no D)") for m in measures]
    meanings = {}
    for g in gaps.values():
        meanings.update({name: meaning.split(" (p =")[0].split(";")[0] for name, _, meaning in gap_summary(g)})
    frame["no gap when"] = [meanings[m] for m in measures]
    return frame


# ---------------------------------------------------------------------- what a map says about itself

def map_notes(projection: str, space: str, explained, offset_share) -> list[tuple[str, str]]:
    """(level, sentence) lines under a map, computed from its numbers: for logits, how much of their
    variance the map left out as the offset the softmax ignores; for PCA, a warning when the second
    axis holds under 1 % of the variance (`atld.latent.axes.axis_warning`)."""
    from atld.latent.axes import axis_warning

    out = []
    if space == LatentSpace.LOGITS and offset_share is not None:
        out.append(("caption", f"Logits are mapped without their offset (the same number added to every logit of an "
                               f"image, which changes no probability): it held {100 * offset_share:.1f} % of the "
                               "logits' variance here. The gap numbers and D use the logits as they are."))
    warning = axis_warning(explained) if projection == Projection.PCA else None
    if warning:
        out.append(("warning", warning))
    return out


def segments(table, indices) -> tuple[list, list]:
    """x and y of one line per test image in `indices` from its natural point to its perturbed one
    (row i and row N + i of the point table), separated by None (one plotly trace for all)."""
    n = len(table) // 2
    xs, ys = [], []
    for i in dict.fromkeys(int(i) for i in indices):
        if 0 <= i < n:
            a, b = table.iloc[i], table.iloc[n + i]
            xs += [a["x"], b["x"], None]
            ys += [a["y"], b["y"], None]
    return xs, ys


def nearest_points(z, point: int, k: int = 8) -> list[tuple[int, float]]:
    """The `k` nearest rows of latents z [M, D] to row `point`, in the full latent space (Euclidean),
    not on the 2-D map: [(row, distance)], nearest first, `point` itself left out."""
    z = np.asarray(z, dtype=np.float64)
    if not 0 <= point < len(z):
        return []
    d = np.sqrt(((z - z[point]) ** 2).sum(axis=1))
    d[point] = np.inf
    order = np.argsort(d, kind="stable")[:max(0, min(k, len(z) - 1))]
    return [(int(i), float(d[i])) for i in order]


# ---------------------------------------------------------------------- D's colours, honestly

def d_colour_lines(check: dict | None) -> list[tuple[str, str]]:
    """(level, sentence) lines beside a colour scale of D's scores, from D's check
    (`DiscriminatorCheck.to_dict()`): D's AUC per batch and per image with the sentence saying
    which kind of separation D has, and, where D does not judge single images, a warning that
    the colours do not mark natural vs attacked points (`atld.evaluate.dwords`)."""
    from atld.evaluate.dwords import auc_words, d_score_caption, inverted_note, separation_sentence

    if not check:
        return []
    sep, own = check.get("sep_pgd"), check.get("sep_own")
    if sep:
        lines = [("caption", separation_sentence(sep, own))]
    else:  # a check stored before the per-batch measurement: the per-image AUC only
        lines = [("caption", f"D's AUC natural vs PGD-20, per image in eval mode: {auc_words(check['auc_pgd'])}; "
                             "no per-batch measurement in this check." + inverted_note(check["auc_pgd"]))]
    caption = d_score_caption(check)
    if caption:
        lines.append(("warning", caption))
    return lines


# ---------------------------------------------------------------------- the attack's path, step by step

PLAYER_SPEEDS = {"slow": 800, "normal": 400, "fast": 150}  # milliseconds per step of the animation


def step_names(steps: int, imt: bool) -> list[str]:
    """What step k of the player shows: "natural", "step 1" … "step S", then "IMT" with a D."""
    return ["natural"] + [f"step {k}" for k in range(1, steps + 1)] + (["IMT step back"] if imt else [])


def player_step(current: int, move: int, count: int) -> int:
    """The step after pressing ‹ (move −1) or › (+1) on step `current` of `count`, kept in range."""
    return min(max(0, int(current) + int(move)), max(0, count - 1))


@dataclass(frozen=True)
class PathFrame:
    """Image j of an attack path at step k (`step_names` order: natural, the steps, then IMT's step
    back): the image and its perturbation so far (float [1, C, H, W]), label, prediction and D's
    P(natural) (None without D)."""
    image: np.ndarray
    delta: np.ndarray
    label: int
    pred: int
    d: float | None


def path_frame(path, k: int, j: int) -> PathFrame | None:
    """`PathFrame` of image j at step k of an `atld.latent.trajectories.AttackPath`, or None when
    the path kept no images or k, j are out of range."""
    images = path.images
    if images is None or not (0 <= k < len(images) and 0 <= j < images.shape[1]):
        return None
    image, start = images[k, j:j + 1].float().numpy(), images[0, j:j + 1].float().numpy()
    imt = k > path.steps
    pred = int((path.imt_preds if imt else path.preds[k])[j])
    scores = path.imt_d if imt else (None if path.d_scores is None else path.d_scores[k])
    return PathFrame(image, image - start, int(path.labels[j]), pred, None if scores is None else float(scores[j]))


def side_by_side_caption(explained, rotated: bool, space: str) -> str:
    """What the two maps side by side are (`atld.latent.axes.side_by_side`), in one paragraph, with
    each map's axis shares and any warning that a map is nearly a line."""
    from atld.latent.axes import axis_warning

    what = "logits without their offset" if space == LatentSpace.LOGITS else "features"
    shares = "; ".join(f"{side}: PC1 {100 * e[0]:.1f} %, PC2 {100 * e[1]:.1f} %"
                       for side, e in zip(("left", "right"), explained))
    text = (f"Each model has its own PCA of its natural points ({what}), measured in units of its natural cloud's "
            "spread (1 = the natural points' root-mean-square distance from their centre), so neither model's scale "
            "can flatten the other; " + ("the right map is turned (rotated or mirrored, never stretched) to line up "
                                         "with the left one on the same images, so a direction means the same in "
                                         "both. " if rotated else "no turn was needed to line the two up. ")
            + f"Perturbed points are placed on each model's natural map. Variance kept — {shares}.")
    for side, e in zip(("left", "right"), explained):
        warning = axis_warning(e)
        if warning:
            text += f" The {side} map: {warning}"
    return text
