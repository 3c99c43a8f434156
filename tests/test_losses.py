"""Loss specs like "bce+0.5*dice": parsing, refusals, and losses that rank predictions sensibly."""

from __future__ import annotations

import pytest
import torch

from polyp.losses import LOSS_NAMES, build_loss, parse_loss_spec


def half_mask() -> torch.Tensor:
    target = torch.zeros(2, 1, 8, 8)
    target[0, :, :, :4] = 1
    target[1, :, 2:6, 2:6] = 1
    return target


@pytest.mark.parametrize(
    ("spec", "terms"),
    [
        ("bce+0.5*dice", [(1.0, "bce"), (0.5, "dice")]),
        ("dice+focal+tversky", [(1.0, "dice"), (1.0, "focal"), (1.0, "tversky")]),
        (" 2 * bce + 1e-1*lovasz ", [(2.0, "bce"), (0.1, "lovasz")]),
    ],
)
def test_parse_loss_spec(spec, terms):
    assert parse_loss_spec(spec) == terms


@pytest.mark.parametrize("spec", ["", "   ", "bce+bce", "foo", "0*dice", "2*", "bce+", "-1*dice", "dice*2", "BCE"])
def test_bad_specs_are_refused(spec):
    with pytest.raises(ValueError):
        parse_loss_spec(spec)
    with pytest.raises(ValueError):
        build_loss(spec)


def test_refusals_say_what_is_wrong():
    with pytest.raises(ValueError, match="twice"):
        parse_loss_spec("bce+bce")
    with pytest.raises(ValueError, match="unknown loss 'foo'.*valid: bce, dice"):
        parse_loss_spec("foo")
    with pytest.raises(ValueError, match="must be positive"):
        parse_loss_spec("0*dice")


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_every_loss_is_a_finite_scalar_with_gradient(name):
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)

    loss = build_loss(name)(logits, half_mask())
    loss.backward()

    assert loss.shape == () and torch.isfinite(loss)
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("spec", [*LOSS_NAMES, "bce+0.5*dice", "dice+focal+tversky"])
def test_perfect_prediction_scores_lower_than_a_wrong_one(spec):
    target = half_mask()
    perfect = (target * 2 - 1) * 8  # confident and right everywhere
    wrong = -perfect

    loss = build_loss(spec)

    assert loss(perfect, target) < loss(wrong, target)


def test_weights_scale_the_terms():
    torch.manual_seed(1)
    logits, target = torch.randn(2, 1, 8, 8), half_mask()

    dice, bce = build_loss("dice")(logits, target), build_loss("bce")(logits, target)

    assert torch.isclose(build_loss("3*dice")(logits, target), 3 * dice)
    assert torch.isclose(build_loss("bce+0.5*dice")(logits, target), bce + 0.5 * dice)


def test_tversky_beta_weighs_false_negatives():
    target = half_mask()
    found_half = torch.full_like(target, -8.0)
    found_half[0, :, :, :2] = 8.0  # first image: half of its polyp found, nothing else predicted
    found_half[1, :, 2:4, 2:6] = 8.0

    misses_weighed_high = build_loss("tversky", tversky_alpha=0.1, tversky_beta=0.9)(found_half, target)
    misses_weighed_low = build_loss("tversky", tversky_alpha=0.9, tversky_beta=0.1)(found_half, target)

    assert misses_weighed_high > misses_weighed_low + 0.2
