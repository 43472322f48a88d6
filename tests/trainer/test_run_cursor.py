"""The data order of the trainer: a function of (seed, step) only."""

from trainer.data.post_training import DataCursor


def test_each_epoch_visits_every_image_once_in_a_fresh_order():
    c = DataCursor(10, seed=3)
    epoch0 = [i for s in range(5) for e, i in c.indices(s, 2) if e == 0]
    epoch1 = [i for s in range(5, 10) for e, i in c.indices(s, 2) if e == 1]
    assert sorted(epoch0) == sorted(epoch1) == list(range(10))
    assert epoch0 != epoch1


def test_steps_are_reproducible_and_cross_epoch_boundaries():
    a, b = DataCursor(5, seed=1), DataCursor(5, seed=1)
    assert [a.indices(s, 3) for s in range(4)] == [b.indices(s, 3) for s in reversed(range(4))][::-1]
    # steps of 3 images cut the same stream as steps of 1, across epoch boundaries
    assert sum((a.indices(s, 3) for s in range(4)), []) == sum((a.indices(s, 1) for s in range(12)), [])
    assert DataCursor(5, seed=2).indices(0, 5) != a.indices(0, 5)
