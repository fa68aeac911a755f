"""Messages naming a type or dtype known only at run time take its article ("got an int", "saved
from an Adam, not an SGD"): they wrote "a {name}", "a int" and "a Adam"."""

import collections

import numpy as np
import pytest

import optkern
import optkern.optim as O
from optkern import schedules as S
from optkern._words import article


@pytest.mark.parametrize(
    "word, want",
    [
        ("int", "an int"),
        ("int8", "an int8"),
        ("uint8", "a uint8"),
        ("float32", "a float32"),
        ("ndarray", "an ndarray"),
        ("object", "an object"),
        ("Adam", "an Adam"),
        ("SGD", "an SGD"),
        ("NAdam", "an NAdam"),
        ("RMSprop", "an RMSprop"),
        ("Tensor", "a Tensor"),
        ("str", "a str"),
        ("list", "a list"),
        ("ellipsis", "an ellipsis"),
        ("NoneType", "a NoneType"),
    ],
)
def test_article(word, want):
    assert article(word) == want


def test_step_given_a_callable_object_names_it_with_its_article():
    class Engine:
        def __call__(self):
            return None

    opt = O.SGD([np.zeros(3, np.float32)], lr=0.1)
    with pytest.raises(TypeError, match="grads: got an Engine;"):
        opt.step(Engine())


def test_schedule_milestones_in_a_mapping_say_an_ordereddict():
    with pytest.raises(TypeError, match=r"got an OrderedDict$"):
        S.multi_step(1.0, collections.OrderedDict({2: 1}))


def test_checkpoint_type_mismatch_says_an_adam_not_an_sgd(tmp_path):
    p = [np.ones(3, np.float32)]
    opt = O.Adam(p, lr=0.1)
    opt.step([np.ones(3, np.float32)])
    optkern.save(tmp_path / "c.npz", opt=opt)
    with pytest.raises(ValueError, match="saved from an Adam, not an SGD"):
        optkern.load(tmp_path / "c.npz", opt=O.SGD([np.ones(3, np.float32)], lr=0.1))
