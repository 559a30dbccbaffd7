"""The training run's data: which subjects feed which pool."""

import pytest

from synthseq.data import load_subjects
from synthseq.errors import ConfigError
from synthseq.training.data import train_dataset


@pytest.mark.parametrize("pools", ["shared", "disjoint"])
def test_unpaired_pools(tiny_cfg, tiny_root, pools):
    subjects = load_subjects(tiny_root)
    ds = train_dataset(tiny_cfg("cyclegan", f"data.unpaired_pools={pools}"), subjects)
    a = {st.subject for st in ds.stacks_a}
    b = {st.subject for st in ds.stacks_b}
    ids = {s.id for s in subjects}
    if pools == "shared":
        assert a == b == ids
    else:  # every subject in exactly one pool
        assert not a & b and a | b == ids and abs(len(a) - len(b)) <= 1


def test_unknown_pool_mode_names_the_key(tiny_cfg, tiny_root):
    with pytest.raises(ConfigError, match="data.unpaired_pools"):
        train_dataset(tiny_cfg("cyclegan", "data.unpaired_pools=mixed"), load_subjects(tiny_root))
