import torch

from synthseq.config import load_config
from synthseq.models import build_gan
from synthseq.training import Trainer
from synthseq.training.data import RunData
from synthseq.training.distributed import DistInfo


class FixedBatch:
    def __init__(self, batch):
        self.b = batch

    def batch(self, step, micro):
        return self.b


def _trainer(tmp_path, overrides=()):
    cfg = load_config(None, ["model.generator_kwargs={base_channels: 8, num_downs: 4, dropout: 0.0}",
                             "model.discriminator_kwargs={base_channels: 8, n_layers: 2}", "train.device=cpu",
                             "train.steps=40", "train.schedule=constant", *overrides])
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.interpolate(torch.rand(4, 1, 8, 8, generator=g) * 2 - 1, size=32, mode="bilinear")
    batch = {"A": a, "B": -a, "mask": torch.ones_like(a)}  # a fixed, learnable mapping (contrast inversion)
    torch.manual_seed(0)
    model = build_gan(cfg.model, cfg.loss, 1)
    data = RunData(FixedBatch(batch), val=[], preview=None, pixel_spacing_mm=None, splits={})
    return Trainer(cfg, model, data, torch.device("cpu"), DistInfo(), tmp_path), batch


def test_a_few_steps_reduce_l1_on_a_fixed_batch(tmp_path):
    trainer, batch = _trainer(tmp_path, ["train.lr=1e-3"])
    l1 = []
    for _ in range(12):
        sums, _, fakes = trainer.train_step()
        l1.append(float((fakes["fake_B"].detach() - batch["B"]).abs().mean()))
    assert trainer.step == 12
    assert l1[-1] < 0.6 * l1[0]
    assert {"G", "D"} <= set(sums)


def test_gradient_accumulation_averages_micro_batches(tmp_path):
    # accumulating 2 identical micro-batches of loss/2 must give the same update as one batch
    one, _ = _trainer(tmp_path, ["train.grad_accum=1"])
    two, _ = _trainer(tmp_path, ["train.grad_accum=2"])
    s1, _, _ = one.train_step()
    s2, _, _ = two.train_step()
    assert abs(float(s1["G"]) - float(s2["G"])) < 1e-5
    for p, q in zip(one.model.parameters(), two.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
    # the frozen-discriminator generator step leaves D trainable again afterwards
    assert all(p.requires_grad for p in two.model.discriminator_parameters())


class EpochDataset(torch.utils.data.Dataset):
    """Items depend on (epoch, index), like the slice datasets' crops and augmentations."""

    def __init__(self):
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return 7

    def __getitem__(self, i):
        return {"A": torch.tensor([100 * self.epoch + i]), "subject": "x"}


def test_dataloader_path_replays_the_same_stream_from_any_step():
    from synthseq.training.data import LoaderSource

    def stream(start, n):
        src = LoaderSource(EpochDataset(), batch_size=2, grad_accum=2, seed=3, info=DistInfo())
        return [src.batch(s, m)["A"].flatten().tolist() for s in range(start, start + n) for m in range(2)]

    full = stream(0, 6)
    assert stream(4, 2) == full[8:]  # a resumed source (fresh object) continues exactly
    items = [x for batch in full[:3] for x in batch]  # epoch 0: 3 batches of 2 = 6 distinct of 7 items
    assert len(set(items)) == 6 and all(x < 100 for x in items)
    assert all(x >= 100 for x in full[3] + full[4] + full[5])  # then epoch 1 (set_epoch called)
