"""The card's two validators agree: fastjsonschema (the fast path every card takes) accepts exactly
the cards jsonschema (the reference, and the source of the one-line messages) accepts."""

from __future__ import annotations

import copy
import json
import random

import pytest

from atld.runs.card import CARD, _card_validator, _fast_card_validator, validate_card
from atld.errors import CheckpointError
from tests.support import SHIPPED

ODD_VALUES = [None, True, False, 0, -1, 1, 2**40, 0.5, -0.5, 1e308, "", "x", "line\x1b[31m", "a" * 5000, [], [1],
              {}, {"a": 1}, "atld-run", "atld", "digits", "finished", 3.0, "0" * 64]


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:3]):
            yield from _paths(v, (*prefix, i))


def _mutate(card: dict, rng: random.Random) -> dict:
    card = copy.deepcopy(card)
    path = rng.choice([p for p in _paths(card) if p])
    parent = card
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and rng.random() < 0.15:
        del parent[path[-1]]
    elif isinstance(parent, dict) and rng.random() < 0.1:
        parent[f"extra_{rng.randint(0, 9)}"] = rng.choice(ODD_VALUES)
    else:
        parent[path[-1]] = rng.choice(ODD_VALUES)
    return card


@pytest.mark.parametrize("name", ["mnist-atld", "digits-natural", "mnist-atld-image-d"])
def test_both_validators_accept_and_refuse_the_same_cards(name):
    base = json.loads((SHIPPED / name / CARD).read_text())
    rng = random.Random(name)
    reference, fast = _card_validator(), _fast_card_validator()
    for _ in range(400):
        card = _mutate(base, rng)
        ok_reference = not any(True for _ in reference.iter_errors(card))
        try:
            fast(card)
            ok_fast = True
        except Exception:  # noqa: BLE001 - fastjsonschema's own exception, or a type it cannot handle
            ok_fast = False
        assert ok_fast == ok_reference, card
        if not ok_reference:
            with pytest.raises(CheckpointError, match=r"^invalid card.json"):
                validate_card(card)
