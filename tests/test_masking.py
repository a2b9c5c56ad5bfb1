"""mask_features: exact counts, exactly the lowest/highest features, fills in range."""

import pytest
import torch

from sgt.errors import SettingError
from sgt.features import ImageModality, TextModality, TimeSeriesModality
from sgt.masking import FILLS, get_fill, mask_features, select_features

IMAGE = ImageModality()
UNIFORM = get_fill("uniform")


def _batch(b=4, c=3, h=5, w=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=g) * 2 + 1
    sal = torch.randn(b, h * w, generator=g)
    return x, sal


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("lowest", [True, False])
def test_exact_count_and_exactly_the_extreme_features(fraction, lowest):
    x, sal = _batch()
    n = sal.shape[1]
    feats = IMAGE.to_features(x)
    masked, selected = mask_features(feats, sal, fraction, UNIFORM, lowest=lowest,
                                     generator=torch.Generator().manual_seed(1))
    count = int(fraction * n)  # rounded down, as the original code
    assert selected.sum(1).tolist() == [count] * x.shape[0]
    order = sal.argsort(dim=1, descending=not lowest)
    expected = torch.zeros_like(selected).scatter_(1, order[:, :count], True)
    assert torch.equal(selected, expected)
    # Unmasked features untouched, masked ones changed (all channels together).
    keep = ~selected
    assert torch.equal(masked[keep], feats[keep])
    if count:
        assert (masked[selected] != feats[selected]).all()


def test_rgb_pixel_channels_masked_together():
    x, sal = _batch(c=3)
    masked, selected = mask_features(IMAGE.to_features(x), sal, 0.5, UNIFORM)
    image = IMAGE.from_features(masked, x)
    changed = image != x  # (B, C, H, W)
    per_pixel = changed.sum(1)  # channels changed per pixel
    assert set(per_pixel.unique().tolist()) == {0, 3}
    assert torch.equal(per_pixel.flatten(1) == 3, selected)


def test_uniform_fill_within_each_sample_and_channel_range():
    x, sal = _batch(b=6, c=3)
    x[1] *= 10  # samples with very different ranges
    feats = IMAGE.to_features(x)
    masked, selected = mask_features(feats, sal, 0.9, fill=get_fill("uniform"),
                                     generator=torch.Generator().manual_seed(0))
    lo = feats.amin(1, keepdim=True).expand_as(feats)
    hi = feats.amax(1, keepdim=True).expand_as(feats)
    sel = selected.unsqueeze(-1).expand_as(feats)
    assert (masked[sel] >= lo[sel]).all() and (masked[sel] <= hi[sel]).all()
    # Per channel: channel 0 of sample 1 spans a 10x wider range than sample 0's.
    spread = [masked[i, selected[i], 0].std() for i in (0, 1)]
    assert spread[1] > 4 * spread[0]


def test_same_generator_seed_same_output_and_different_seed_differs():
    x, sal = _batch()
    feats = IMAGE.to_features(x)
    a, _ = mask_features(feats, sal, 0.5, UNIFORM, generator=torch.Generator().manual_seed(7))
    b, _ = mask_features(feats, sal, 0.5, UNIFORM, generator=torch.Generator().manual_seed(7))
    c, _ = mask_features(feats, sal, 0.5, UNIFORM, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize(("name", "kwargs"), [("mean", {}), ("constant", {"value": -0.42}),
                                              ("background", {})])
def test_deterministic_fills(name, kwargs):
    x, sal = _batch()
    feats = IMAGE.to_features(x)
    masked, selected = mask_features(feats, sal, 0.5, fill=get_fill(name, kwargs))
    expected = {"mean": feats.mean(1, keepdim=True),
                "constant": torch.full_like(feats[:, :1], -0.42),
                "background": feats[:, :1]}[name].expand_as(feats)
    sel = selected.unsqueeze(-1).expand_as(feats)
    assert torch.equal(masked[sel], expected[sel])


def test_baseline_fill_takes_baseline_values():
    x, sal = _batch()
    baseline = torch.randn_like(x)
    feats, base_feats = IMAGE.to_features(x), IMAGE.to_features(baseline)
    masked, selected = mask_features(feats, sal, 0.3, fill=get_fill("baseline",
                                                                    {"baseline": base_feats}))
    sel = selected.unsqueeze(-1).expand_as(feats)
    assert torch.equal(masked[sel], base_feats[sel])


def test_time_series_cells_are_features():
    ts = TimeSeriesModality()
    x = torch.randn(3, 7, 4)
    sal = torch.randn(3, 28)
    masked, selected = mask_features(ts.to_features(x), sal, 0.5, UNIFORM)
    out = ts.from_features(masked, x)
    assert ((out != x).flatten(1) == selected).all()
    assert selected.sum(1).tolist() == [14] * 3


def test_padding_is_never_a_feature_and_count_follows_each_length():
    text = TextModality(pad_id=0)
    ids = torch.tensor([[5, 6, 7, 8, 0, 0], [5, 6, 7, 8, 9, 10], [5, 6, 0, 0, 0, 0]])
    valid = text.valid_features(ids)
    emb = torch.randn(3, 6, 4)
    sal = torch.randn(3, 6)
    sal[~valid] = -100.0  # padding would be "least salient" if it counted
    masked, selected = mask_features(emb, sal, 0.5, UNIFORM, valid=valid)
    assert not selected[~valid].any()
    assert selected.sum(1).tolist() == [2, 3, 1]  # int(0.5 × 4, 6, 2)


def test_bad_fraction_and_unknown_fill_are_rejected():
    for bad in (1.0, -0.1, True, "0.5"):
        with pytest.raises(SettingError, match=r"\[0, 1\)"):
            select_features(torch.zeros(1, 4), bad)
    with pytest.raises(SettingError, match="unknown fill 'gaussian-ish'; allowed: .*uniform"):
        get_fill("gaussian-ish")
    with pytest.raises(SettingError, match="'constant' takes no argument 'vale'.*'value'"):
        get_fill("constant", {"vale": 1.0})
    assert {"uniform", "mean", "constant", "background", "baseline"} <= set(FILLS.names())


def test_vectorised_on_the_input_device_without_host_sync():
    x, sal = _batch(b=2)
    feats = IMAGE.to_features(x)
    masked, selected = mask_features(feats, sal, 0.5, UNIFORM)
    assert masked.device == feats.device and selected.dtype == torch.bool
