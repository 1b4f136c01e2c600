"""What each stored view of the app must look like (torch-free, Streamlit-free): the schema a
result-store entry is checked against when it is read (`atld.ui.result_store`), so an entry that
was edited, truncated, swapped in from another version or written by anyone else is a miss that
is removed and computed again, never a traceback or a widget error on the page.

One codec per persisted view of `atld.ui.compute` (`persist=`): `DATA_FACTS`, `LATENT_PLOT`,
`COMPARE_PLOTS`, `DISCRIMINATOR_CHECK`, and `check_map_meta` for the Latent explorer's stored map
(`atld.ui.latent.MapPointsCodec`). The gap numbers' shape (`GAP_SCHEMA`) is
`atld.latent.gap.gap_numbers`'s.
"""

from __future__ import annotations

import functools
import json

from atld.ui.result_store import JsonCodec

MAX_TEST_IMAGES = 10**7
_NUMBER_OR_NULL = {"type": ["number", "null"]}
_MEASURES = ("discriminator_auc", "two_sample_accuracy", "two_sample_p_value", "mmd2", "mmd_p_value",
             "mmd_bandwidth", "knn_mixing", "knn_mixing_expected")  # atld.latent.gap.MEASURE_KEYS (torch-free here)
_COUNT = {"type": "integer", "minimum": 0, "maximum": MAX_TEST_IMAGES}
_TEXT = {"type": "string", "maxLength": 2000}

GAP_SCHEMA = {
    "type": "object",
    "required": [*_MEASURES, "per_class"],
    "properties": {
        **{k: _NUMBER_OR_NULL for k in _MEASURES},
        "n_natural": _COUNT, "n_perturbed": _COUNT,
        "settings": {"type": "object", "maxProperties": 20},
        "per_class": {"type": "array", "maxItems": 1000, "items": {
            "type": "object", "required": ["label"],
            "properties": {"label": {"type": "integer"}, "n_natural": _COUNT, "n_perturbed": _COUNT,
                           **{k: _NUMBER_OR_NULL for k in _MEASURES}}}},
    },
}

DATA_FACTS_SCHEMA = {
    "type": "object", "required": ["n_test", "note"], "additionalProperties": False,
    "properties": {"n_test": {"type": "integer", "minimum": 1, "maximum": MAX_TEST_IMAGES},
                   "n_train": {"type": "integer", "minimum": 0, "maximum": MAX_TEST_IMAGES},
                   "note": {"type": ["string", "null"], "maxLength": 2000}},
}

_PROBABILITY = {"type": "number", "minimum": 0, "maximum": 1}
DISCRIMINATOR_CHECK_SCHEMA = {
    "type": "object",
    "required": ["n", "epsilon", "auc_pgd", "auc_own", "train_auc", "window", "in_window_natural", "in_window_pgd",
                 "p_natural", "p_pgd", "p_pgd_after_imt", "separates", "uniform_half_step", "sentences"],
    "properties": {
        "n": {"type": "integer", "minimum": 1, "maximum": MAX_TEST_IMAGES}, "epsilon": _PROBABILITY,
        "auc_pgd": _PROBABILITY, "auc_own": _PROBABILITY, "train_auc": {"type": ["number", "null"]},
        "window": {"type": "array", "items": _PROBABILITY, "minItems": 2, "maxItems": 2},
        "in_window_natural": _PROBABILITY, "in_window_pgd": _PROBABILITY,
        "p_natural": {"type": "array", "items": _PROBABILITY, "minItems": 3, "maxItems": 3},
        "p_pgd": {"type": "array", "items": _PROBABILITY, "minItems": 3, "maxItems": 3},
        "p_pgd_after_imt": _PROBABILITY, "separates": {"type": "boolean"},
        "uniform_half_step": {"type": "boolean"},
        "sentences": {"type": "array", "maxItems": 20, "items": _TEXT},
    },
}

_FIGURE_TEXT = {"type": "string", "minLength": 2, "maxLength": 256 * 2**20}
_SHARES = {"type": "array", "items": _PROBABILITY, "minItems": 2, "maxItems": 2}  # each PCA axis's variance share
COMPARE_PLOTS_SCHEMA = {
    "type": "object", "required": ["figures", "explained", "rotated", "gaps"], "additionalProperties": False,
    "properties": {
        "figures": {"type": "array", "items": _FIGURE_TEXT, "minItems": 2, "maxItems": 2},
        "explained": {"type": "array", "items": _SHARES, "minItems": 2, "maxItems": 2},
        "rotated": {"type": "boolean"},
        "gaps": {"type": "array", "items": GAP_SCHEMA, "minItems": 2, "maxItems": 2},
    },
}

SIDE_BY_SIDE_SCHEMA = {  # the Learn page's maps side by side (`compute.side_by_side_plots`)
    "type": "object", "required": ["figures", "explained", "warnings", "gaps", "accuracy", "n"],
    "additionalProperties": False,
    "properties": {
        "figures": {"type": "array", "items": _FIGURE_TEXT, "minItems": 1, "maxItems": 8},
        "explained": {"type": "array", "items": _SHARES, "minItems": 1, "maxItems": 8},
        "warnings": {"type": "array", "items": {"type": ["string", "null"], "maxLength": 2000}, "maxItems": 8},
        "gaps": {"type": "array", "items": GAP_SCHEMA, "minItems": 1, "maxItems": 8},
        "accuracy": {"type": "array", "maxItems": 8,
                     "items": {"type": "array", "items": _PROBABILITY, "minItems": 2, "maxItems": 2}},
        "n": {"type": "integer", "minimum": 1, "maximum": MAX_TEST_IMAGES},
    },
}

_SCORES = {"type": "array", "items": _PROBABILITY, "maxItems": MAX_TEST_IMAGES}
LEARNED_SCHEMA = {  # "What D really learned" (`atld.evaluate.discriminator.what_d_learned`)
    "type": "object",
    "required": ["n", "epsilon", "batch_size", "separation", "separation_own", "sentence", "scores", "share_curve",
                 "steps_clean", "steps_pgd", "perturbation"],
    "properties": {
        "n": {"type": "integer", "minimum": 1, "maximum": MAX_TEST_IMAGES}, "epsilon": _PROBABILITY,
        "batch_size": {"type": "integer", "minimum": 1}, "sentence": _TEXT,
        "separation": {"type": "object"}, "separation_own": {"type": "object"},
        "scores": {"type": "object", "additionalProperties": _SCORES, "maxProperties": 20},
        "share_curve": {"type": "array", "maxItems": 1000, "items": {"type": "object", "required": ["share", "mean"],
                                                                      "properties": {"share": _PROBABILITY}}},
        "steps_clean": {"type": "object"}, "steps_pgd": {"type": "object"}, "perturbation": {"type": "object"},
    },
}

CURVES_SCHEMA = {  # the Evaluate page's robust-accuracy curves (`compute.accuracy_curves`): rows per curve
    "type": "array", "maxItems": 64,
    "items": {"type": "array", "maxItems": 1000, "items": {
        "type": "object", "required": ["attack", "inference", "accuracy", "n", "epsilon"],
        "properties": {"attack": {"type": "string", "maxLength": 100}, "inference": {"type": "string", "maxLength": 20},
                       "accuracy": _PROBABILITY, "epsilon": _PROBABILITY,
                       "n": {"type": "integer", "minimum": 0, "maximum": MAX_TEST_IMAGES},
                       "ci_low": {"type": ["number", "null"]}, "ci_high": {"type": ["number", "null"]}}}},
}

FIGURE_SCHEMA = {  # plotly's JSON as `plotly.io.to_json` writes a figure
    "type": "object", "required": ["data", "layout"],
    "properties": {"data": {"type": "array", "maxItems": 10000,
                            "items": {"type": "object", "required": ["type"],
                                      "properties": {"type": {"type": "string", "maxLength": 40}}}},
                   "layout": {"type": "object"}},
}


@functools.cache
def _validator(name: str):
    import jsonschema

    schema = globals()[name]
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate(value, schema_name: str) -> None:
    """ValueError with the first violation of the schema `schema_name` (a name in this module)."""
    import jsonschema

    error = jsonschema.exceptions.best_match(_validator(schema_name).iter_errors(value))
    if error is not None:
        raise ValueError(f"a stored view that does not fit {schema_name}: {error.message[:200]}")


def check_figure_json(text) -> None:
    """`text` must be a plotly figure's JSON (what `atld.ui.views.figure_from_json` reads)."""
    if not isinstance(text, str):
        raise ValueError("a stored figure that is not JSON text")
    validate(json.loads(text), "FIGURE_SCHEMA")


def _compare_plots(value) -> None:
    validate(value, "COMPARE_PLOTS_SCHEMA")
    for text in value["figures"]:
        check_figure_json(text)


def check_map_meta(meta) -> None:
    """The numbers stored beside a map's arrays: accuracies in [0, 1] and the gap numbers."""
    if not isinstance(meta, dict):
        raise ValueError("a stored map whose numbers are not an object")
    for k in ("accuracy_nat", "accuracy_pert"):
        v = meta.get(k)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise ValueError(f"a stored map whose {k} is not a number in [0, 1]")
    validate(meta.get("gap"), "GAP_SCHEMA")


DATA_FACTS = JsonCodec(lambda v: validate(v, "DATA_FACTS_SCHEMA"))
DISCRIMINATOR_CHECK = JsonCodec(lambda v: validate(v, "DISCRIMINATOR_CHECK_SCHEMA"))
LATENT_PLOT = JsonCodec(check_figure_json)
COMPARE_PLOTS = JsonCodec(_compare_plots)


def _side_by_side(value) -> None:
    validate(value, "SIDE_BY_SIDE_SCHEMA")
    for text in value["figures"]:
        check_figure_json(text)


SIDE_BY_SIDE = JsonCodec(_side_by_side)
LEARNED = JsonCodec(lambda v: validate(v, "LEARNED_SCHEMA"))
CURVES = JsonCodec(lambda v: validate(v, "CURVES_SCHEMA"))


def check_map_view(arrays: dict, meta) -> None:
    """A stored map beyond its shapes (`MapViewCodec` checks those): its numbers, images that are
    finite and in [0, 1], and the points' set names, coordinates and classes of the right kinds."""
    import numpy as np

    from atld.vocab import PointSet

    check_map_meta(meta)
    for k in ("images_nat", "images_pert"):
        a = arrays[k]
        if a.size and not (np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1):
            raise ValueError(f"a stored map whose {k} are not finite values in [0, 1]")
    if not set(np.unique(arrays["col_set"]).tolist()) <= {s.value for s in PointSet}:
        raise ValueError("a stored map with an unknown point set")
    for k in ("col_x", "col_y", "col_d_natural"):
        if arrays[k].dtype.kind != "f":
            raise ValueError(f"a stored map whose {k[4:]} column is not numbers")
    for k in ("col_index", "col_label", "col_pred"):
        if arrays[k].dtype.kind not in "iu":
            raise ValueError(f"a stored map whose {k[4:]} column is not whole numbers")
