"""ImagePool semantics and exact state round trip."""

from __future__ import annotations

import pytest
import torch

from synthseq.errors import ConfigError
from synthseq.models.image_pool import ImagePool


def _batches(n: int, batch: int = 3, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(batch, 1, 4, 4, generator=g) for _ in range(n)]


def test_returns_input_while_filling_and_is_bounded():
    pool = ImagePool(size=5, seed=0)
    first = _batches(1, batch=5)[0]
    assert torch.equal(pool.query(first), first)
    assert len(pool) == 5
    seen = list(first.unbind(0))
    swapped = 0
    for batch in _batches(40, seed=1):
        out = pool.query(batch)
        assert out.shape == batch.shape and len(pool) == 5
        for new, got in zip(batch, out):
            # each output is the new image or one stored earlier (possibly earlier in this batch)
            if not torch.equal(got, new):
                swapped += 1
                assert any(torch.equal(got, old) for old in seen)
            seen.append(new)
    assert 0.3 < swapped / 120 < 0.7  # swap probability 1/2


def test_partially_full_batch():
    pool = ImagePool(size=4, seed=0)
    batches = _batches(2)
    pool.query(batches[0])
    out = pool.query(batches[1])  # first image fills the last slot and comes back unchanged
    assert torch.equal(out[0], batches[1][0])
    assert len(pool) == 4


def test_zero_size_is_identity():
    pool = ImagePool(size=0)
    batch = _batches(1)[0]
    assert pool.query(batch) is batch and len(pool) == 0


def test_seeded_and_state_round_trip():
    batches = _batches(30)
    a, b = ImagePool(4, seed=7), ImagePool(4, seed=7)
    for batch in batches[:10]:
        torch.testing.assert_close(a.query(batch), b.query(batch))  # same seed, same choices
    state = a.state_dict()
    rest_a = [a.query(batch) for batch in batches[10:]]
    resumed = ImagePool(4, seed=123)
    resumed.load_state_dict(state)
    rest_resumed = [resumed.query(batch) for batch in batches[10:]]
    assert all(torch.equal(x, y) for x, y in zip(rest_a, rest_resumed))
    other = ImagePool(4, seed=8)
    for batch in batches[:10]:
        other.query(batch)
    assert any(not torch.equal(x, other.query(batch)) for x, batch in zip(rest_a, batches[10:]))


def test_accepts_a_generator_and_rejects_size_mismatch():
    g = torch.Generator().manual_seed(3)
    pool = ImagePool(2, seed=g)
    assert pool.generator is g
    with pytest.raises(ConfigError, match="pool_size"):
        ImagePool(3).load_state_dict(pool.state_dict())


def test_output_is_detached():
    pool = ImagePool(2)
    x = torch.rand(2, 1, 4, 4, requires_grad=True)
    assert not pool.query(x * 2).requires_grad
