"""The registry, and one test run over every registered network (timm style)."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from synthseq.errors import ConfigError
from synthseq.models import create_model, list_models, register_model
from synthseq.models import registry as registry_module

# Tiny constructor kwargs and input shape for every registered network. A network registered without an
# entry here fails test_every_model_has_a_case, so new models cannot skip the shared checks.
CASES = {
    "unet": (dict(in_channels=3, base_channels=8, num_downs=5), (2, 3, 32, 32), [(2, 1, 32, 32)]),
    "resnet": (dict(in_channels=2, base_channels=8, n_blocks=2), (2, 2, 32, 32), [(2, 1, 32, 32)]),
    # 32 -> 16 -> 8 -> 4 (stride 2) -> 3 -> 2 (stride 1, 4x4 kernels)
    "patchgan": (dict(in_channels=2, base_channels=8), (2, 2, 32, 32), [(2, 1, 2, 2)]),
    # scale 0 on 32 px, scale 1 on 16 px; n_layers=2: 32 -> 16 -> 8 -> 7 -> 6 and 16 -> 8 -> 4 -> 3 -> 2
    "multiscale_patchgan": (dict(in_channels=2, base_channels=8, n_layers=2, num_scales=2), (2, 2, 32, 32),
                            [(2, 1, 6, 6), (2, 1, 2, 2)]),
}


def _as_list(y):
    return list(y) if isinstance(y, list | tuple) else [y]


def test_every_model_has_a_case():
    assert sorted(CASES) == list_models()


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_model_shapes_finite_and_round_trip(name):
    kwargs, in_shape, out_shapes = CASES[name]
    torch.manual_seed(0)
    net = create_model(name, **kwargs)
    x = torch.rand(in_shape) * 2 - 1

    net.train()
    ys = _as_list(net(x))
    assert [tuple(y.shape) for y in ys] == out_shapes
    assert all(torch.isfinite(y).all() for y in ys)
    if name in ("unet", "resnet"):  # tanh output
        assert all(y.abs().max() <= 1 for y in ys)

    # rebuild from the recorded config: same architecture, fresh weights, then the saved state
    assert net.registry_name == name
    assert {k: net.config[k] for k in kwargs} == kwargs
    twin = create_model(net.registry_name, **net.config)
    assert twin.config == net.config
    net.eval()
    twin.eval()
    with torch.no_grad():
        before = _as_list(twin(x))
        buffer = io.BytesIO()
        torch.save(net.state_dict(), buffer)
        buffer.seek(0)
        twin.load_state_dict(torch.load(buffer, weights_only=True))
        ref, out = _as_list(net(x)), _as_list(twin(x))
    assert any(not torch.equal(a, b) for a, b in zip(before, ref))  # fresh init really differs
    assert all(torch.equal(a, b) for a, b in zip(ref, out))


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("norm", ["batch", "instance", "group", "none"])
def test_every_model_every_norm_and_channels_last(name, norm):
    kwargs, in_shape, _ = CASES[name]
    torch.manual_seed(0)
    net = create_model(name, **kwargs, norm=norm).eval()
    x = torch.rand(in_shape) * 2 - 1
    with torch.no_grad():
        ref = _as_list(net(x))
        out = _as_list(net.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last)))
    for a, b in zip(ref, out):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)


def test_init_is_normal_002():
    torch.manual_seed(0)
    net = create_model("unet", in_channels=1, base_channels=64, num_downs=6)
    weights = torch.cat([m.weight.flatten() for m in net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)])
    assert abs(weights.mean().item()) < 1e-3
    assert weights.std().item() == pytest.approx(0.02, rel=0.02)
    bn = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bn and all(m.bias.abs().max() == 0 for m in bn)
    assert torch.cat([m.weight for m in bn]).mean().item() == pytest.approx(1.0, abs=0.01)


def test_unknown_name_lists_known_names():
    with pytest.raises(ConfigError, match="unknown model 'vit'") as info:
        create_model("vit", in_channels=1)
    for name in list_models():
        assert name in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_and_missing_kwargs():
    with pytest.raises(ConfigError, match="unknown argument 'depth'"):
        create_model("unet", in_channels=1, depth=4)
    with pytest.raises(ConfigError, match="missing argument.*in_channels"):
        create_model("patchgan")
    with pytest.raises(ConfigError, match="norm 'layer'"):
        create_model("resnet", in_channels=1, norm="layer")


def test_register_custom_model(monkeypatch):
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))

    @register_model("tiny_test_net")
    class Tiny(nn.Module):
        def __init__(self, in_channels: int, width: int = 4) -> None:
            super().__init__()
            self.conv = nn.Conv2d(in_channels, width, 1)

    net = create_model("tiny_test_net", in_channels=2)
    assert "tiny_test_net" in list_models()
    assert net.config == {"in_channels": 2, "width": 4}
    assert Tiny(3, width=5).config == {"in_channels": 3, "width": 5}  # direct construction records too
    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny_test_net")(type("Other", (nn.Module,), {}))


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_model_traces_without_graph_breaks(name):
    # fullgraph=True fails on any graph break; aot_eager needs no C++ compiler, so this runs on CPU
    kwargs, in_shape, _ = CASES[name]
    torch.manual_seed(0)
    net = create_model(name, **kwargs).eval()
    x = torch.rand(in_shape) * 2 - 1
    torch._dynamo.reset()
    compiled = torch.compile(net, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        for a, b in zip(_as_list(net(x)), _as_list(compiled(x))):
            torch.testing.assert_close(b, a)
