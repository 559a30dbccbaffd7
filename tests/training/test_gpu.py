"""GPU-only: bf16 autocast, channels_last, fused Adam and torch.compile in the real loop (skipped on CPU)."""

import pytest
import torch

from synthseq.config import load_config
from synthseq.models import build_gan
from synthseq.training import Trainer
from synthseq.training.data import RunData
from synthseq.training.distributed import DistInfo

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


class FixedBatch:
    def __init__(self, batch):
        self.b = batch

    def batch(self, step, micro):
        return self.b


def _trainer(tmp_path, *overrides):
    cfg = load_config(None, ["model.generator_kwargs={base_channels: 8, num_downs: 5, dropout: 0.0}",
                             "model.discriminator_kwargs={base_channels: 8, n_layers: 3}", "train.device=cuda",
                             "train.steps=20", "train.schedule=constant", "train.lr=1e-3", *overrides])
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.interpolate(torch.rand(8, 1, 8, 8, generator=g) * 2 - 1, size=64, mode="bilinear")
    batch = {"A": a, "B": -a, "mask": torch.ones_like(a)}
    torch.manual_seed(0)
    model = build_gan(cfg.model, cfg.loss, 1)
    data = RunData(FixedBatch(batch), val=[], preview=None, pixel_spacing_mm=None, splits={})
    return Trainer(cfg, model, data, torch.device("cuda"), DistInfo(), tmp_path), batch


def test_bf16_autocast_channels_last_fused_adam(tmp_path):
    trainer, batch = _trainer(tmp_path, "train.amp=true", "train.channels_last=true")
    assert trainer.amp and trainer.channels_last
    assert trainer.opt["G"].defaults.get("fused") is True
    seen = {}
    hook = trainer.model.G.register_forward_hook(lambda m, i, o: seen.setdefault("dtype", o.dtype))
    l1 = []
    for _ in range(15):
        _, _, fakes = trainer.train_step()
        l1.append(float((fakes["fake_B"].float() - batch["B"].cuda()).abs().mean()))
    hook.remove()
    assert seen["dtype"] == torch.bfloat16  # the generator ran under bf16 autocast
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # master weights stay fp32
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert l1[-1] < 0.7 * l1[0]


def test_compiled_networks_train_and_save_plain_weights(tmp_path):
    trainer, _ = _trainer(tmp_path, "train.compile=true", "train.amp=true")
    assert hasattr(trainer.model.G, "_orig_mod")
    for _ in range(3):
        sums, _, _ = trainer.train_step()
    assert torch.isfinite(sums["G"]) and torch.isfinite(sums["D"])
    state = trainer.state([], [])
    assert not any("_orig_mod" in k or "module." in k for k in state["model"])
    fresh = build_gan(trainer.cfg.model, trainer.cfg.loss, 1)
    fresh.load_state_dict(state["model"])  # a checkpoint of a compiled run loads into a plain model
