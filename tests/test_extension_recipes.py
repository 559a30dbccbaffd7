"""Each recipe of docs/overview.md ("Extending synthseq"), done for real with a dummy: a network, a GAN kind, a metric,
a downstream task and a web page. If a recipe stops working, its test fails."""

from __future__ import annotations

import json
import urllib.request

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from synthseq.config import load_config, to_dict
from synthseq.errors import ConfigError
from synthseq.io import Volume


# ------------------------------------------------------------------------------------------------ network
def test_recipe_add_a_network():
    from synthseq.models import build_gan, create_model, list_models, register_model, registry

    @register_model("dummy_conv")
    class DummyConv(nn.Module):
        size_multiple = 1

        def __init__(self, in_channels: int, out_channels: int = 1, width: int = 4) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(width, out_channels, 3, padding=1), nn.Tanh())

        def forward(self, x):
            return self.net(x)

    try:
        assert "dummy_conv" in list_models()
        cfg = load_config(None, ["model.generator=dummy_conv", "model.generator_kwargs={width: 3}",
                                 "model.discriminator_kwargs={base_channels: 4, n_layers: 1}"])
        gan = build_gan(cfg.model, cfg.loss, in_channels=2)
        assert isinstance(gan.G, DummyConv) and gan.G.config == {"in_channels": 2, "out_channels": 1, "width": 3}
        assert gan.translate(torch.zeros(1, 2, 8, 8)).shape == (1, 1, 8, 8)
        twin = create_model("dummy_conv", **gan.G.config)
        assert sum(p.numel() for p in twin.parameters()) == sum(p.numel() for p in gan.G.parameters())
    finally:
        registry._REGISTRY.pop("dummy_conv", None)


# ----------------------------------------------------------------------------------------------- GAN kind
def test_recipe_add_a_gan_kind(tmp_path):
    from synthseq.checkpoint import ModelSpec, save_checkpoint
    from synthseq.models import Pix2Pix, build_gan, kinds, list_gans, register_gan
    from synthseq.synthesis import Synthesizer

    @register_gan("l1only", default_gan_mode="lsgan")
    class L1Only(Pix2Pix):
        """pix2pix without the adversarial term in the generator objective."""

        @classmethod
        def from_config(cls, model_cfg, loss_cfg, in_channels, gan_mode):
            model = super().from_config(model_cfg, loss_cfg, in_channels, gan_mode)
            model.__class__ = cls
            return model

        def generator_loss(self, batch):
            fake = self.G(batch["A"])
            l1 = (fake - batch["B"]).abs().mean()
            return l1, {"G_l1": l1.detach()}, {"fake_B": fake}

    try:
        assert "l1only" in list_gans()
        cfg = load_config(None, ["model.kind=l1only", "model.generator_kwargs={base_channels: 4, num_downs: 3}",
                                 "model.discriminator_kwargs={base_channels: 4, n_layers: 1}"])
        gan = build_gan(cfg.model, cfg.loss, 1)
        assert type(gan) is L1Only and gan.kind == "l1only" and gan.criterion_gan.mode == "lsgan"
        batch = {"A": torch.rand(2, 1, 16, 16) * 2 - 1, "B": torch.rand(2, 1, 16, 16) * 2 - 1}
        loss, terms, _ = gan.generator_loss(batch)
        loss.backward()
        # a checkpoint of the new kind is usable by synthesis with no other change
        spec = ModelSpec(kind="l1only", config=to_dict(cfg), image_size=16)
        path = save_checkpoint({**spec.entries(), "model": gan.eval().state_dict()}, tmp_path / "k.pt")
        vol = Volume(np.random.default_rng(0).uniform(10, 100, (4, 16, 16)).astype(np.float32), np.eye(4),
                     nib.Nifti1Header(), None)
        out = Synthesizer.from_checkpoint(path, device="cpu")(vol)
        assert out.shape == vol.shape and np.isfinite(out.data).all()
    finally:
        kinds._KINDS.pop("l1only", None)


# -------------------------------------------------------------------------------------------------- metric
def test_recipe_add_a_metric():
    from synthseq import metrics as M
    from synthseq.evaluation import SubjectData, evaluate_volumes, summarize

    @M.register_metric("max_abs_error", higher_is_better=False)
    def max_abs_error(pred, target, mask, data_range):
        return float(np.abs(pred - target)[mask].max())

    try:
        rng = np.random.default_rng(1)
        target = np.zeros((4, 20, 20), np.float32)
        target[:, 4:16, 4:16] = rng.uniform(100, 500, (4, 12, 12))
        pred = target.copy()
        pred[2, 10, 10] += 80.0
        vol = lambda a: Volume(a, np.eye(4), nib.Nifti1Header(), None)  # noqa: E731
        table = evaluate_volumes([SubjectData("sub-1", vol(pred), vol(target), mask=target > 0)], baselines=False,
                                 use_lpips=False, pred_norm="own")
        assert "max_abs_error" in table.columns and table["max_abs_error"].iloc[0] > 0.1
        assert "max_abs_error" in summarize(table)["pseudo_stir"]
        assert M.higher_is_better("max_abs_error") is False
        for taken in ("ssim", "cr_x", "sr_x", "rb_x", "cnr_x"):  # built-ins and the per-lesion-class column families
            with pytest.raises(ValueError, match="built-in"):
                M.register_metric(taken, higher_is_better=True)(max_abs_error)
    finally:
        M.unregister_metric("max_abs_error")


# ---------------------------------------------------------------------------------------- downstream task
def test_recipe_add_a_downstream_task():
    from synthseq.downstream.dataset import check_labels
    from synthseq.downstream.tasks import Task, finding_features, register_task, unregister_task

    with pytest.raises(ConfigError, match="unknown label"):
        check_labels(["plc_signal_high"])
    register_task(Task("plc_signal_high", "finding", feature="plc_signal", description="dummy"))
    try:
        assert check_labels(["plc_signal_high"]) == ["plc_signal_high"]
        assert finding_features()["plc_signal_high"] == "plc_signal"  # the utility benchmark reads it from PLC signal
        with pytest.raises(ConfigError, match="unknown target"):
            check_labels(["plc_signal_high"], what="target")  # a finding is not an outcome
    finally:
        unregister_task("plc_signal_high")


# ----------------------------------------------------------------------------------------------- web page
def test_recipe_add_a_web_page():
    from flask import Flask, jsonify

    from synthseq import web

    def create_app(greeting: str = "hello") -> Flask:
        app = Flask("dummy")

        @app.get("/api/hello")
        def hello():
            return jsonify({"greeting": greeting})

        return app

    web.register_page("dummy", "A dummy page", create_app, cli="(tests only)")
    try:
        page = web.get_page("dummy")
        server = web.make_server(page.create_app(greeting="hi"), port=0)
        assert server.host == web.DEFAULT_HOST  # loopback unless asked otherwise
        with web.ServerThread(server) as running:
            with urllib.request.urlopen(f"{running.url}/api/hello", timeout=10) as resp:
                assert json.loads(resp.read()) == {"greeting": "hi"}
        with pytest.raises(ConfigError, match="--port"):
            web.make_server(page.create_app(), port=70000)
    finally:
        web._PAGES.pop("dummy", None)
