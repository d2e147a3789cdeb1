import itertools
import os
import random
import shutil
import tempfile
import zlib

import numpy as np
import pytest

from helpers import DTYPES

#: numpy's own ``default_rng``, kept before the fixture below replaces it.
_DEFAULT_RNG = np.random.default_rng

#: Mixed into every test's seeds. Running the suite with another value
#: (``CDL_TEST_SEED=1 pytest``) draws other weights and data wherever a test
#: left its randomness unseeded: a test that then fails depends on its draws.
TEST_SEED = int(os.environ.get("CDL_TEST_SEED", "0"))


@pytest.fixture
def torch64():
    """torch with float64 as the default dtype (NAdam's mu_product and the step
    counters are kept in the default dtype), restored afterwards."""
    torch = pytest.importorskip("torch")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield torch
    torch.set_default_dtype(old)


@pytest.fixture(params=DTYPES, ids=lambda d: np.dtype(d).name)
def dtype(request):
    """Each test taking ``dtype`` runs in float32 and in float64."""
    return request.param


def seed_of(nodeid):
    """The seed of a test: from its id (not ``hash``, which PYTHONHASHSEED
    changes) and ``TEST_SEED``, so it is the same in any order and process."""
    return zlib.crc32(f"{TEST_SEED}:{nodeid}".encode())


@pytest.fixture(autouse=True)
def _seeded_randomness(request, monkeypatch):
    """Make every test's randomness a function of the test alone.

    A layer built without a model's seed, like any ``np.random.default_rng()``
    called without a seed, draws from the operating system's entropy: a test
    whose outcome depends on those draws passes or fails by chance. Here the
    n-th unseeded generator of a test is seeded with (the test's seed, n), so
    two unseeded generators still differ, and the legacy global generators
    (``np.random.rand``, ``random.random``) start from the test's seed.
    Tests should still seed what they rely on; this makes the rest
    reproducible, whatever the order the tests run in.
    """
    test_seed = seed_of(request.node.nodeid)
    count = itertools.count()

    def default_rng(seed=None):
        if seed is None:
            seed = [test_seed, next(count)]
        return _DEFAULT_RNG(seed)

    monkeypatch.setattr(np.random, "default_rng", default_rng)
    np.random.seed(test_seed)
    random.seed(test_seed)


@pytest.fixture
def fast_dir(tmp_path):
    """A directory on tmpfs where there is one: the resume tests save hundreds
    of backups, and an fsync to disk costs ~10 ms (durability is
    test_crash_save.py's subject, not theirs)."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        path = tempfile.mkdtemp(prefix="cdl-resume-", dir="/dev/shm")
        yield type(tmp_path)(path)
        shutil.rmtree(path, ignore_errors=True)
    else:
        yield tmp_path
