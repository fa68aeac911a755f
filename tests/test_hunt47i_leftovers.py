"""Two leftovers: a ZeRO shard of another state storage named as such, and a gradient fraction
that cannot exceed 1.

1. ``ShardedOptimizer.load_state_dict`` of a shard saved by a float32-state optimizer into an
   8-bit-state one (or back) at the same world size refused it with "chunk is 12, this optimizer's
   is 256 (... to change the world size)": the world was the same, the 8-bit states' block
   alignment made the chunk differ. The message now names both state dtypes (also for a shard
   saved before layouts held them: read from its 8-bit entries), and the state is unchanged.
   Likewise a shard of other params (another model) named them, not the world size, and a shard
   whose layout came back from JSON (its shapes lists, not tuples) loads. (World size 1: one
   process, no mpiexec.)
2. ``hessian.gradient_concentration`` with k = n (the whole space) returned 1.0000000000000002:
   the sum of the squared coefficients over an orthonormal basis exceeded ``||g||^2`` by rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

from optkern import hessian, optim


def _sharded(sizes=(12,), **lowp):
    from optkern.distributed import Communicator, ShardedOptimizer

    ps = [np.linspace(-1, 1, n).astype(np.float32) for n in sizes]
    z = ShardedOptimizer(optim.Adam, ps, Communicator(), lr=1e-2, **lowp)
    z.step([np.ones(n, np.float32) for n in sizes])
    return z


@pytest.mark.parametrize("old_shard", [False, True])
def test_a_shard_of_another_state_dtype_names_the_state_dtype_not_the_world_size(old_shard):
    pytest.importorskip("mpi4py")
    eight, plain = _sharded(state_dtype="int8"), _sharded()
    for src, dst, theirs, ours in ((plain, eight, "'float32'", "'int8'"), (eight, plain, "'int8'", "'float32'")):
        shard = src.state_dict()
        if old_shard:  # (saved before the layout held its storage: told by its entries)
            del shard["zero"]["state_dtype"], shard["zero"]["block"]
        before = dst.state_dict()["optimizer"]["state"]
        with pytest.raises(ValueError, match=r"state_dict\['zero'\]\['chunk'\]") as e:
            dst.load_state_dict(shard)
        msg = str(e.value)
        assert f"state_dtype={theirs}" in msg and f"state_dtype={ours}" in msg, msg
        assert "world size" not in msg, msg
        after = dst.state_dict()["optimizer"]["state"]
        for k, entry in before.items():
            for name, v in entry.items():
                assert np.array_equal(np.asarray(v), np.asarray(after[k][name])), (k, name)
        dst.load_state_dict(src.consolidate_state_dict(to=None))  # (what to do instead: loads)
    eight.load_state_dict(eight.state_dict())  # (its own shard: still loads)


def test_a_shard_of_other_params_names_them_and_a_json_layout_loads():
    pytest.importorskip("mpi4py")
    z, other = _sharded((5, 7)), _sharded((5, 8))
    with pytest.raises(ValueError, match=r"state_dict\['zero'\]\['shapes'\]") as e:
        z.load_state_dict(other.state_dict())
    assert "other parameters" in str(e.value) and "world size" not in str(e.value), str(e.value)
    shard = z.state_dict()
    shard["zero"]["shapes"] = [list(s) for s in shard["zero"]["shapes"]]  # (as JSON gives them back)
    z.load_state_dict(shard)


def test_gradient_concentration_over_the_whole_space_is_at_most_one():
    rng = np.random.default_rng(0)
    seen_one = 0
    for n in (3, 5, 8):
        for _ in range(15):
            a = rng.standard_normal((n, n))
            a = a + a.T
            vecs = np.linalg.eigh(a)[1][:, ::-1]
            f = hessian.gradient_concentration(a, rng.standard_normal(n), n, eigenvectors=vecs)
            assert 0.0 <= f <= 1.0, (n, f)
            seen_one += f == 1.0
    assert seen_one  # (the whole space holds the whole gradient)
