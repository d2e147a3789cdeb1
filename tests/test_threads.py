"""Setting the BLAS thread count."""
import pytest

import cdl


def test_threads_context_sets_and_restores():
    before = cdl.get_num_threads()
    with cdl.threads(1):
        assert cdl.get_num_threads() == 1
    assert cdl.get_num_threads() == before


def test_set_num_threads():
    before = cdl.get_num_threads()
    try:
        cdl.set_num_threads(1)
        assert cdl.get_num_threads() == 1
    finally:
        cdl.set_num_threads(before)
    assert cdl.get_num_threads() == before


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_bad_thread_counts(bad):
    with pytest.raises(ValueError, match="positive int"):
        cdl.set_num_threads(bad)
    with pytest.raises(ValueError, match="positive int"):
        with cdl.threads(bad):
            pass
