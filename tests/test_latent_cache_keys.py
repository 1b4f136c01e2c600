"""The latent cache (`atld.latent.cache`) uses an entry only for the exact key it was computed for:
every entry carries its full key (the model's content hash, the data, the attack and its
settings, the seed, the versions of the lab and its libraries), so entries swapped between two
models, copied under another key's name, written by another version or without a key are misses
and are computed again (the `embed --cache-dir` case: never another model's accuracy under this
model's name and hash)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

import atld.latent.cache as lc
from atld.attacks.gradient import AttackConfig
from atld.latent import LatentCache


def _entries(directory, kind):
    out = {}
    for f in directory.glob("*.npz"):
        with np.load(f, allow_pickle=False) as z:
            key = json.loads(str(z[lc.KEY_FIELD]))
        if key["kind"] == kind:
            out[key.get("model")] = f
    return out


def _swap(a, b):
    tmp = a.with_name("swap")
    os.rename(a, tmp)
    os.rename(b, a)
    os.rename(tmp, b)


def test_latents_swapped_between_two_models_are_misses(tmp_path, natural_run, latent_runs, digits_batch):
    x, y = digits_batch(48)
    pgd = AttackConfig("pgd", 0.2, steps=2)
    one, two = natural_run, latent_runs[False]
    assert one.model_hash != two.model_hash
    cache = LatentCache(tmp_path)
    a, b = cache.latents(one, x, y, pgd, seed=3), cache.latents(two, x, y, pgd, seed=3)
    assert not torch.equal(a.logits_nat, b.logits_nat)  # two models, two answers
    files = _entries(tmp_path, "latents")
    _swap(files[one.model_hash], files[two.model_hash])
    again = LatentCache(tmp_path)
    a2, b2 = again.latents(one, x, y, pgd, seed=3), again.latents(two, x, y, pgd, seed=3)
    assert (again.hits, again.misses) == (0, 2)  # both recomputed, neither served the other's
    assert torch.equal(a2.logits_nat, a.logits_nat) and torch.equal(b2.logits_pert, b.logits_pert)
    third = LatentCache(tmp_path)  # and stored back under the right keys
    third.latents(one, x, y, pgd, seed=3)
    assert (third.hits, third.misses) == (1, 0)


@pytest.mark.parametrize("case", ["copied under another key", "another lab version", "another torch version",
                                  "no key (the old format)", "a key of another seed"])
def test_an_entry_for_another_key_is_a_miss(tmp_path, case, monkeypatch):
    cache = LatentCache(tmp_path)
    calls = []

    def compute(value):
        calls.append(value)
        return {"a": np.full(3, value, dtype=np.float32)}

    parts = dict(kind="test", model="m" * 64, seed=1)
    cache.arrays(parts, lambda: compute(1.0))
    path = cache._path(lc.key_text(**parts), ".npz")
    if case == "copied under another key":
        other = dict(parts, model="n" * 64)
        shutil.copy(path, cache._path(lc.key_text(**other), ".npz"))
        out = cache.arrays(other, lambda: compute(2.0))
    elif case in ("another lab version", "another torch version"):
        name = "atld" if case == "another lab version" else "torch"
        real = lc.versions()
        monkeypatch.setattr(lc, "versions", lambda: {**real, name: "0.0.0-other"})
        out = cache.arrays(parts, lambda: compute(2.0))
    elif case == "no key (the old format)":
        path.write_bytes(lc.npz_bytes({"a": np.full(3, 9.0, dtype=np.float32)}))
        out = cache.arrays(parts, lambda: compute(2.0))
    else:
        other = dict(parts, seed=2)
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        arrays[lc.KEY_FIELD] = np.array(lc.key_text(**other))  # the right file name, the key of another request
        path.write_bytes(lc.npz_bytes(arrays))
        out = cache.arrays(parts, lambda: compute(2.0))
    assert calls == [1.0, 2.0] and (out["a"] == 2.0).all()


def test_gap_numbers_are_bound_to_their_inputs(tmp_path):
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(30, 3)), rng.normal(size=(30, 3)) + 2
    cache = LatentCache(tmp_path)
    near, far = cache.gap(z1, z1 + 0.01, permutations=10), cache.gap(z1, z2, permutations=10)
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 2
    _swap(*files)
    again = LatentCache(tmp_path)
    assert again.gap(z1, z1 + 0.01, permutations=10) == near and again.gap(z1, z2, permutations=10) == far
    assert (again.hits, again.misses) == (0, 2)
    files[0].write_text(json.dumps(far))  # a bare result without its key
    assert LatentCache(tmp_path).gap(z1, z2, permutations=10) == far
