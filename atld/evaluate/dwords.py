"""D's check in words (torch-free, so the app's torch-free pages can read stored checks): the
thresholds, the AUC wording ("chance", "inverted") and the one sentence that says which kind of
separation D has (docs/evaluation.md, "The discriminator"). `atld.evaluate.discriminator` measures."""

from __future__ import annotations

SEPARATION_AUC = 0.75  # an AUC below this does not "separate" (D's eval-mode AUC natural vs PGD-20 decides `separates`)
CHANCE_BAND = 0.03  # |AUC − 0.5| at most this: "at chance"; below 0.5 − CHANCE_BAND: "inverted"
SIGNIFICANCE = 0.05  # McNemar p below this: a difference between two steps
WINDOW_SHARE = 0.9  # share of inputs inside ATLD+'s window above which ATLD+ is a uniform half step
NOISE_SHARE = 0.25  # perturbation doing less than this share of FGSM's extra damage over noise: "close to noise"
ADVERSARIAL_SHARE = 0.6  # at least this share: "adversarial"


def auc_words(value: float) -> str:
    """An AUC (natural scored above perturbed = 1) as a table shows it: "0.98", "0.51 (chance)",
    "0.27 (inverted)"; `INVERTED` says once what inverted means."""
    if value < 0.5 - CHANCE_BAND:
        return f"{value:.2f} (inverted)"
    if value <= 0.5 + CHANCE_BAND:
        return f"{value:.2f} (chance)"
    return f"{value:.2f}"


INVERTED = "An AUC below 0.5 is inverted: D scores attacked latents as more natural than clean ones."


def inverted_note(*values: float) -> str:
    """" " + INVERTED when any of the AUCs is inverted, else ""."""
    return f" {INVERTED}" if any(v < 0.5 - CHANCE_BAND for v in values) else ""


def separation_kind(per_batch: float, per_image: float) -> str:
    """"images" (per image at least SEPARATION_AUC), "batches" (only per batch), or "neither"."""
    if per_image >= SEPARATION_AUC:
        return "images"
    return "batches" if per_batch >= SEPARATION_AUC else "neither"


def _plain(sep) -> dict | None:
    return sep if sep is None or isinstance(sep, dict) else sep.to_dict()


def separation_sentence(sep, own=None) -> str:
    """Which kind of separation D has, in one plain sentence: `sep` natural vs PGD-20, `own`
    (optional) natural vs D's own training perturbation (each a `Separation` or its dict). D
    "judges single images" when its per-image AUC against PGD-20 reaches SEPARATION_AUC; it
    "tells batches apart, not images" when only a per-batch AUC (against either) does."""
    sep, own = _plain(sep), _plain(own)

    def numbers(s: dict, against: str) -> str:
        return (f"natural vs {against} {auc_words(s['per_batch'])} per batch, {auc_words(s['per_image'])} per image, "
                f"{auc_words(s['mixed'])} in one mixed batch")

    parts = [numbers(sep, "PGD-20")] + ([numbers(own, "its own training perturbation")] if own else [])
    how = (f"AUC {'; '.join(parts)} (per batch: train mode, an all-natural and an all-perturbed batch of "
           f"{sep['batch_size']} in separate calls, the way the released recipe trains D; per image: eval mode, as "
           "IMT uses it)")
    values = [v for s in (sep, own) if s for v in (s["per_batch"], s["per_image"], s["mixed"])]
    note = inverted_note(*values)
    if sep["per_image"] >= SEPARATION_AUC:
        return f"D judges single images: it separates natural from adversarial latents one at a time, {how}.{note}"
    if own and own["per_image"] >= SEPARATION_AUC:
        return (f"D judges single images against its own training perturbation, not against PGD-20: it cannot "
                f"separate a single PGD-20 latent from a natural one, {how}.{note}")
    if max(s["per_batch"] for s in (sep, own) if s) >= SEPARATION_AUC:
        return (f"D tells batches apart, not images: it cannot separate a single natural latent from an adversarial "
                f"one, {how}; its BatchNorm's per-call statistics carry the label, so a single image's score says "
                f"little.{note}")
    return (f"D separates neither batches nor images well: it cannot separate natural from adversarial latents, "
            f"{how}.{note}")


def d_score_caption(check: dict | None) -> str | None:
    """The caption beside a colour bar of D's scores, from D's check (`DiscriminatorCheck.to_dict()`
    or a card's `discriminator_check`): None when D judges single images, else one sentence
    saying that the colours do not mark natural vs attacked images."""
    if not check:
        return None
    if "auc" in check:  # a card's summary
        auc = check["auc"]
        per_image = auc.get("pgd_per_image")
        per_batch = max(auc.get("pgd_per_batch") or 0, auc.get("own_per_batch") or 0)
    else:
        per_image = check["auc_pgd"]
        per_batch = max((check.get(k) or {}).get("per_batch", 0) for k in ("sep_pgd", "sep_own"))
    if per_image is None or per_image >= SEPARATION_AUC:
        return None
    batches = (f" (it tells whole batches apart: AUC {auc_words(per_batch)} per batch)"
               if per_batch >= SEPARATION_AUC else "")
    return (f"D does not judge single images: its AUC natural vs PGD-20 is {auc_words(per_image)} per image in eval "
            f"mode{batches}, so these colours do not mark which points are natural and which attacked."
            + inverted_note(per_image))
