import json

import numpy as np
import pytest
import torch

from sympformer.data import DataError, TrainBatches, val_batches

N, T, B = 5000, 16, 4  # ~312 blocks per epoch: several epochs in a few dozen batches
TOKENS = np.arange(N, dtype=np.int32)  # token i == position i: a batch shows where it came from


def take(batches, n):
    return [next(batches) for _ in range(n)]


def same(a, b):
    pairs = zip(a, b, strict=True)
    return len(a) == len(b) and all(
        torch.equal(x, u) and torch.equal(y, v) for (x, y), (u, v) in pairs
    )


def test_targets_are_inputs_shifted_and_dtype_int64():
    x, y = next(TrainBatches(TOKENS, T, B, seed=0))
    assert x.shape == y.shape == (B, T)
    assert x.dtype == y.dtype == torch.int64
    assert torch.equal(y, x + 1)  # contiguous text: y_t is the token after x_t
    assert torch.equal(x[:, 1:] - x[:, :-1], torch.ones(B, T - 1, dtype=torch.int64))


def test_same_seed_same_batches_other_seed_other_batches():
    a = take(TrainBatches(TOKENS, T, B, seed=3), 20)
    assert same(a, take(TrainBatches(TOKENS, T, B, seed=3), 20))
    assert not same(a, take(TrainBatches(TOKENS, T, B, seed=4), 20))


def test_an_epoch_visits_non_overlapping_blocks_once():
    batches = TrainBatches(TOKENS, T, 1, seed=5)
    per_epoch = len(batches.starts(0))
    starts = np.array([int(next(batches)[0][0, 0]) for _ in range(per_epoch)])
    assert (batches.epoch, batches.position) == (1, 0)
    offset = starts.min()
    assert 0 <= offset < T
    assert np.array_equal(np.sort(starts), offset + T * np.arange(per_epoch))  # all, disjoint
    assert per_epoch == (N - 1 - offset) // T
    assert not np.array_equal(starts, np.sort(starts))  # shuffled
    assert not np.array_equal(batches.starts(1), batches.starts(0))  # reshuffled per epoch


def test_resume_continues_with_exactly_the_same_batches():
    batches = TrainBatches(TOKENS, T, B, seed=1)
    take(batches, 70)  # crosses into epoch 1 (78 batches per epoch)
    state = json.loads(json.dumps(batches.state_dict()))  # what a checkpoint stores
    expected = take(batches, 30)  # crosses the next epoch boundary
    assert batches.epoch >= 1
    resumed = TrainBatches(TOKENS, T, B, seed=1)
    resumed.load_state_dict(state)
    assert same(take(resumed, 30), expected)
    assert resumed.tokens_seen == batches.tokens_seen == 100 * B * T
    assert (resumed.epoch, resumed.position) == (batches.epoch, batches.position)


def test_resume_refuses_other_settings():
    state = TrainBatches(TOKENS, T, B, seed=1).state_dict()
    with pytest.raises(ValueError, match="seed=1"):
        TrainBatches(TOKENS, T, B, seed=2).load_state_dict(state)
    with pytest.raises(ValueError, match="n_tokens"):
        TrainBatches(TOKENS[:-100], T, B, seed=1).load_state_dict(state)


def test_ranks_get_disjoint_equal_shards_and_stay_in_step():
    ranks = [TrainBatches(TOKENS, T, B, seed=7, rank=r, world_size=2) for r in range(2)]
    shards = [set(r.starts(0).tolist()) for r in ranks]
    assert len(shards[0]) == len(shards[1])
    assert shards[0].isdisjoint(shards[1])
    assert len(shards[0] | shards[1]) >= len(TrainBatches(TOKENS, T, B, seed=7).starts(0)) - 1
    seen = [{int(s) for x, _ in take(r, 30) for s in x[:, 0]} for r in ranks]
    assert seen[0].isdisjoint(seen[1])  # 30 batches: all within epoch 0
    assert [r.state_dict() for r in ranks][0] == ranks[1].state_dict()


def test_bad_arguments():
    with pytest.raises(DataError, match=r"block_size \+ 1 = 17"):
        TrainBatches(TOKENS[:16], T, B, seed=0)
    with pytest.raises(ValueError, match="rank=2"):
        TrainBatches(TOKENS, T, B, seed=0, rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size=0"):
        TrainBatches(TOKENS, T, 0, seed=0)
    with pytest.raises(DataError, match="world_size=4"):
        TrainBatches(TOKENS[:40], T, B, seed=0, world_size=4)


def test_validation_batches_are_fixed_and_non_overlapping():
    a = val_batches(TOKENS, T, B, n_batches=5, seed=0)
    assert same(a, val_batches(TOKENS, T, B, n_batches=5, seed=0))
    assert not same(a, val_batches(TOKENS, T, B, n_batches=5, seed=1))
    starts = np.array([int(s) for x, y in a for s in x[:, 0]])
    assert len(a) == 5
    assert len(set(starts.tolist())) == 5 * B
    assert np.all(starts % T == 0)
    assert np.all(np.diff(starts) > 0)
    assert all(torch.equal(y, x + 1) for x, y in a)


def test_validation_uses_what_fits():
    assert [x.shape for x, _ in val_batches(TOKENS[: 10 * T + 1], T, B, 5, seed=0)] == [(B, T)] * 2
    assert [x.shape for x, _ in val_batches(TOKENS[: 3 * T + 1], T, B, 5, seed=0)] == [(3, T)]
    with pytest.raises(DataError, match="fewer than one block"):
        val_batches(TOKENS[:T], T, B, 5, seed=0)


def test_memmap_in_memmap_out(bible_bpe):
    x, y = next(TrainBatches(bible_bpe.train, 64, 8, seed=0))
    assert x.shape == (8, 64)
    assert int(x.max()) < bible_bpe.vocab_size
    assert isinstance(bible_bpe.train, np.memmap)  # batching did not replace it
