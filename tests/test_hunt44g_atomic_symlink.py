"""A file written atomically through a symbolic link lands in the link's target, as ``open(path,
"w")`` (``np.savez``, ``torch.save``) writes it.

``replace_atomically`` renamed its temporary over the link itself: ``optkern.save("ck.npz", ...)``
with ck.npz a link to /big/disk/run3.npz replaced the link by a regular file beside it, and the
file it pointed to kept the previous checkpoint -- a later ``load`` of that file restored stale
state, silently. (Its permission bits were already taken from the target.)"""

from __future__ import annotations

import os

import numpy as np
import pytest

import optkern
from optkern import _atomic

pytestmark = pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links")


def test_a_checkpoint_saved_through_a_link_updates_its_target(tmp_path):
    (tmp_path / "runs").mkdir()
    target = tmp_path / "runs" / "run3.npz"
    optkern.save(target, x=np.zeros(3))
    os.chmod(target, 0o640)
    link = tmp_path / "latest.npz"
    os.symlink(os.path.join("runs", "run3.npz"), link)  # (relative, as ln -s writes one)
    optkern.save(link, x=np.arange(3.0))
    assert os.path.islink(link) and os.readlink(link) == os.path.join("runs", "run3.npz")
    assert optkern.load(target)["x"].tolist() == [0.0, 1.0, 2.0]
    assert os.stat(target).st_mode & 0o777 == 0o640
    assert sorted(os.listdir(tmp_path / "runs")) == ["run3.npz"] and sorted(os.listdir(tmp_path)) == [
        "latest.npz",
        "runs",
    ]


def test_a_dangling_link_creates_its_target(tmp_path):
    link = tmp_path / "out.json"
    os.symlink("real.json", link)
    with _atomic.replace_atomically(str(link)) as f:
        f.write("{}")
    assert os.path.islink(link) and (tmp_path / "real.json").read_text() == "{}"
