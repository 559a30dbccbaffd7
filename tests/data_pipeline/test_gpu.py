"""GPUSliceBank: batch shapes, exact reproducibility from a generator, paired alignment, sharding (CPU; + CUDA)."""

from __future__ import annotations

import pytest
import torch

from synthseq.data import load_subjects
from synthseq.data.datasets import PairedSliceDataset, UnpairedSliceDataset
from synthseq.data.gpu import GPUSliceBank, rank_seed
from synthseq.data.transforms import AugmentSettings


@pytest.fixture
def dataset(h, tmp_path):
    subs = load_subjects(h.make_layout(tmp_path / "ph", n_subjects=2))
    return PairedSliceDataset(subs, image_size=16, context_slices=3, seed=1)


def test_batch_shapes_ranges_and_mask(dataset):
    bank = GPUSliceBank.from_dataset(dataset, "cpu")
    assert len(bank) == len(dataset) and bank.in_channels == 3
    batch = next(bank.batches(5, augment=True, generator=torch.Generator().manual_seed(0)))
    assert set(batch) == {"A", "B", "mask"}
    assert batch["A"].shape == (5, 3, 16, 16) and batch["B"].shape == (5, 1, 16, 16)
    assert batch["mask"].shape == (5, 1, 16, 16) and batch["A"].dtype == torch.float32
    assert set(batch["mask"].unique().tolist()) <= {0.0, 1.0}
    assert float(batch["B"].min()) >= -1 - 1e-5 and float(batch["B"].max()) <= 1 + 1e-5


def test_exactly_reproducible_from_generator_state(dataset):
    bank = GPUSliceBank.from_dataset(dataset, "cpu")
    a = bank.sample(6, generator=torch.Generator().manual_seed(123))
    b = bank.sample(6, generator=torch.Generator().manual_seed(123))
    c = bank.sample(6, generator=torch.Generator().manual_seed(124))
    for k in a:
        assert torch.equal(a[k], b[k])
    assert not torch.equal(a["A"], c["A"])
    # resume through the bank's own generator state
    it = bank.batches(4)
    next(it)
    state = bank.state_dict()
    expected = next(it)
    bank.load_state_dict(state)
    again = next(bank.batches(4))
    for k in expected:
        assert torch.equal(expected[k], again[k])


def test_unaugmented_batches_are_exact_centre_crops(dataset):
    bank = GPUSliceBank.from_dataset(dataset, "cpu")
    items = [dataset[i] for i in range(len(dataset))]
    batch = bank.sample(8, augment=False, generator=torch.Generator().manual_seed(3))
    for n in range(8):
        match = [it for it in items if torch.equal(it["A"], batch["A"][n])]
        assert match, "every unaugmented bank item is a dataset item"
        assert torch.equal(match[0]["B"], batch["B"][n]) and torch.equal(match[0]["mask"], batch["mask"][n])


def test_larger_crop_than_slice_pads_with_background(dataset):
    bank = GPUSliceBank.from_dataset(dataset, "cpu", image_size=40)
    batch = bank.sample(3, augment=False, generator=torch.Generator().manual_seed(0))
    assert batch["A"].shape == (3, 3, 40, 40)
    pads = {round(float(st.pad_A[0]), 5) for st in dataset.stacks}
    for n in range(3):  # slices are 30 x 24: the top 5 rows are padding with the slice's background value
        top = batch["A"][n, :, :5]
        assert torch.all(top == top[0, 0, 0]) and round(float(top[0, 0, 0]), 5) in pads
    assert torch.all(batch["mask"][:, :, :5] == 0) and torch.all(batch["B"][:, :, :5] == -1)


def test_paired_geometric_augmentation_moves_a_and_b_together(h, tmp_path):
    subs = load_subjects(h.make_layout(tmp_path / "ph", n_subjects=1, stir_same_as_t2w=True))
    ds = PairedSliceDataset(subs, image_size=20, norm="zscore", min_foreground=0.2)  # zscore: B not clipped
    geo = AugmentSettings(flip_prob=0.5, affine_prob=1.0, rotate_deg=10, scale=0.1, translate_px=4,
                          bias_prob=0, gamma_prob=0, noise_prob=0)
    bank = GPUSliceBank.from_dataset(ds, "cpu", augment_settings=geo)
    g = torch.Generator().manual_seed(9)
    batch = bank.sample(8, augment=True, generator=g)
    torch.testing.assert_close(batch["A"], batch["B"], atol=1e-5, rtol=0)
    plain = bank.sample(8, augment=False, generator=torch.Generator().manual_seed(9))
    assert not torch.allclose(batch["A"], plain["A"])
    st = ds.stacks[0]
    thr = (st.pad_A[0] + st.A[st.mask.astype(bool)].min()) / 2
    agree = ((batch["B"] > float(thr)).float() == batch["mask"]).float().mean()
    assert agree > 0.9  # the mask was warped with the same parameters


def test_lesion_channel_moves_with_the_pair(h, tmp_path):
    ds = PairedSliceDataset(h.layout_with_lesion_maps(tmp_path / "ph"), image_size=20, norm="zscore",
                            min_foreground=0.2, lesion_key="lesions")
    geo = AugmentSettings(flip_prob=0.5, affine_prob=1.0, rotate_deg=10, scale=0.1, translate_px=4,
                          bias_prob=0, gamma_prob=0, noise_prob=0)
    bank = GPUSliceBank.from_dataset(ds, "cpu", augment_settings=geo)
    thr = h.core_threshold(ds.stacks[0])
    for augment in (False, True):
        batch = bank.sample(8, augment=augment, generator=torch.Generator().manual_seed(3))
        assert set(batch) == {"A", "B", "mask", "lesion"} and batch["lesion"].shape == batch["B"].shape
        assert set(batch["lesion"].unique().tolist()) == {0.0, 1.0}
        assert ((batch["B"] > thr).float() == batch["lesion"]).float().mean() > 0.95
        assert ((batch["mask"] == 1) | (batch["lesion"] == 0)).all()  # lesions lie inside the body


def test_intensity_augmentation_only_on_input(h, tmp_path):
    subs = load_subjects(h.make_layout(tmp_path / "ph", n_subjects=1, stir_same_as_t2w=True))
    ds = PairedSliceDataset(subs, image_size=20, norm="zscore", min_foreground=0.2)
    inten = AugmentSettings(flip_prob=0, affine_prob=0, bias_prob=1, gamma_prob=1, noise_prob=1)
    bank = GPUSliceBank.from_dataset(ds, "cpu", augment_settings=inten)
    batch = bank.sample(4, augment=True, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(batch["A"], batch["B"], atol=1e-3)
    # identity geometry: B is (up to interpolation round-off) an integer crop of one of its slices
    src = torch.as_tensor(ds.stacks[0].B)  # (S, 1, 30, 24)
    windows = src.unfold(2, 20, 1).unfold(3, 20, 1)  # (S, 1, 11, 5, 20, 20)
    for n in range(4):
        err = (windows - batch["B"][n][None, :, None, None]).abs().amax(dim=(1, 4, 5))
        assert float(err.min()) < 1e-4


def test_unpaired_bank(h, tmp_path):
    subs = load_subjects(h.make_layout(tmp_path / "ph", n_subjects=3))
    ds = UnpairedSliceDataset(subs[:2], subs[2:], image_size=16, seed=4)
    bank = GPUSliceBank.from_dataset(ds, "cpu")
    assert not bank.paired and bank.B.shape[0] == len(ds.index_b)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a, b = bank.sample(6, generator=g1), bank.sample(6, generator=g2)
    assert a["A"].shape == (6, 1, 16, 16) and a["B"].shape == (6, 1, 16, 16)
    for k in a:
        assert torch.equal(a[k], b[k])


def test_rank_sharding_and_streams(dataset):
    shards = [GPUSliceBank.from_dataset(dataset, "cpu", rank=r, world_size=2) for r in range(2)]
    assert len(shards[0]) + len(shards[1]) == len(dataset)
    assert not torch.equal(shards[0].A[: len(shards[1])], shards[1].A[: len(shards[0])])
    assert rank_seed(0, 0) != rank_seed(0, 1) and rank_seed(0, 1) == rank_seed(0, 1)
    with pytest.raises(ValueError):
        GPUSliceBank.from_dataset(dataset, "cpu", rank=2, world_size=2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bank_on_cuda(dataset):
    bank = GPUSliceBank.from_dataset(dataset, "cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    batch = bank.sample(32, generator=g)
    assert batch["A"].device.type == "cuda" and batch["A"].shape == (32, 3, 16, 16)
    again = bank.sample(32, generator=torch.Generator(device="cuda").manual_seed(0))
    torch.testing.assert_close(batch["A"], again["A"])
    with pytest.raises(ValueError, match="generator is on cpu"):
        bank.sample(2, generator=torch.Generator())
