"""One augmentation definition: both data paths draw the same parameters from the same distributions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthseq.data import transforms as T
from synthseq.data.gpu import GPUSliceBank
from synthseq.data.transforms import AugmentSettings, augment_item, sample_geometry, sample_intensity

ORIGINAL = {"sample_geometry": sample_geometry, "sample_intensity": sample_intensity}
SETTINGS = AugmentSettings(flip_prob=0.5, affine_prob=0.7, rotate_deg=10.0, scale=0.1, translate_px=4.0,
                           bias_prob=0.6, gamma_prob=0.6, noise_prob=0.6)


def _record(monkeypatch, module) -> list:
    """Wrap the shared samplers as ``module`` sees them and record what they return."""
    calls = []
    for name in ("sample_geometry", "sample_intensity"):
        real = ORIGINAL[name]

        def spy(s, n, g, _real=real, _name=name):
            out = _real(s, n, g)
            calls.append((_name, out))
            return out

        monkeypatch.setattr(module, name, spy)
    return calls


@pytest.mark.parametrize("seed", [0, 123, 2**40 + 7])
def test_same_seed_same_parameters_on_both_paths(monkeypatch, seed):
    import synthseq.data.gpu as gpu

    cpu_calls = _record(monkeypatch, T)  # the map-style datasets' path (augment_item)
    item = {"A": torch.zeros(1, 16, 16), "B": torch.zeros(1, 16, 16), "mask": torch.ones(1, 16, 16)}
    augment_item(SETTINGS, item, seed=seed, geometric_keys=("A", "B", "mask"), intensity_keys=("A",))
    gpu_calls = _record(monkeypatch, gpu)  # the device-resident bank, one item from a generator seeded the same
    a = torch.zeros(1, 1, 16, 16)
    boxes = torch.tensor([[0, 0, 16, 16]])
    bank = GPUSliceBank(a, torch.ones_like(a), a.clone(), boxes, boxes, image_size=16, paired=True,
                        augment_settings=SETTINGS, device="cpu")
    bank.sample(1, augment=True, generator=torch.Generator().manual_seed(seed))
    assert [c[0] for c in cpu_calls] == [c[0] for c in gpu_calls] == ["sample_geometry", "sample_intensity"]
    (_, geo_cpu), (_, int_cpu) = cpu_calls
    (_, geo_gpu), (_, int_gpu) = gpu_calls
    for f in ("flip", "angle", "zoom", "shift"):
        assert torch.equal(getattr(geo_cpu, f), getattr(geo_gpu, f)), f
    for f in ("bias", "gamma", "noise_std"):
        assert torch.equal(getattr(int_cpu, f), getattr(int_gpu, f)), f


def test_the_sampler_is_a_pure_function_of_the_generator_state():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a, b = sample_geometry(SETTINGS, 64, g1), sample_geometry(SETTINGS, 64, g2)
    ia, ib = sample_intensity(SETTINGS, 64, g1), sample_intensity(SETTINGS, 64, g2)
    for x, y in [(a.angle, b.angle), (a.shift, b.shift), (ia.bias, ib.bias), (ia.gamma, ib.gamma)]:
        assert torch.equal(x, y)


def test_distributions_follow_the_settings():
    n = 20000
    g = torch.Generator().manual_seed(0)
    geo, inten = sample_geometry(SETTINGS, n, g), sample_intensity(SETTINGS, n, g)
    assert (geo.flip == -1).float().mean().item() == pytest.approx(SETTINGS.flip_prob, abs=0.02)
    on = geo.angle != 0
    assert on.float().mean().item() == pytest.approx(SETTINGS.affine_prob, abs=0.02)
    assert geo.angle.abs().max().item() <= np.deg2rad(SETTINGS.rotate_deg) + 1e-6
    assert (geo.zoom[on] - 1).abs().max().item() <= SETTINGS.scale + 1e-6
    assert geo.shift.abs().max().item() <= SETTINGS.translate_px + 1e-6
    assert ((inten.bias != 0).any(1)).float().mean().item() == pytest.approx(SETTINGS.bias_prob, abs=0.02)
    g_on = inten.gamma != 1
    assert inten.gamma[g_on].min() >= SETTINGS.gamma[0] - 1e-6 and inten.gamma[g_on].max() <= SETTINGS.gamma[1] + 1e-6
    log_g = torch.log(inten.gamma[g_on])  # log-uniform: the log is uniform, its mean is the midpoint
    assert log_g.mean().item() == pytest.approx(float(np.mean(np.log(SETTINGS.gamma))), abs=0.01)
    assert inten.noise_std.max().item() <= SETTINGS.noise_std


def test_cpu_item_flip_moves_a_b_and_mask_together():
    s = AugmentSettings(flip_prob=1.0, affine_prob=0.0, bias_prob=0.0, gamma_prob=0.0, noise_prob=0.0)
    x = torch.arange(16.0).repeat(16, 1)[None] / 16 * 2 - 1  # (1, 16, 16) ramp along W
    m = (torch.arange(16) < 5).float().repeat(16, 1)[None]
    out = augment_item(s, {"A": x, "B": x.clone(), "mask": m}, seed=1, geometric_keys=("A", "B", "mask"))
    torch.testing.assert_close(out["A"], x.flip(-1))
    torch.testing.assert_close(out["B"], out["A"])
    assert torch.equal(out["mask"], m.flip(-1))
