"""One ``limit_threads(n)`` object used for several blocks: each ``with`` runs its block with n threads
and puts back the count it found (the docstring's "Run the block"). It was a generator context
manager: the second ``with`` raised contextlib's AttributeError ('_GeneratorContextManager' object
has no attribute 'args'), naming nothing of optkern's."""

import threading

import pytest

import optkern


@pytest.fixture
def restore():
    before = optkern.get_num_threads()
    yield before
    optkern.set_num_threads(before)


def test_one_object_runs_two_blocks(restore):
    optkern.set_num_threads(2)
    one = optkern.limit_threads(1)
    for _ in range(2):
        with one:
            assert optkern.get_num_threads() == 1
        assert optkern.get_num_threads() == 2


def test_one_object_nested_in_itself(restore):
    optkern.set_num_threads(3)
    one = optkern.limit_threads(1)
    with one:
        optkern.set_num_threads(2)
        with one:
            assert optkern.get_num_threads() == 1
        assert optkern.get_num_threads() == 2
    assert optkern.get_num_threads() == 3


def test_one_object_as_a_decorator_in_two_threads(restore):
    optkern.set_num_threads(2)
    inside, gate = [], threading.Barrier(2)

    @optkern.limit_threads(1)
    def work():
        gate.wait()  # (both blocks open at once)
        inside.append(optkern.get_num_threads())
        gate.wait()

    ts = [threading.Thread(target=work) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert inside == [1, 1] and optkern.get_num_threads() == 2


def test_a_bad_count_still_raises_naming_n_before_anything_changes(restore):
    with pytest.raises(ValueError, match="^n: "):
        optkern.limit_threads(0)
    assert optkern.get_num_threads() == restore
