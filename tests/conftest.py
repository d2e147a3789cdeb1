import numpy as np
import pytest

from helpers import DTYPES


@pytest.fixture(params=DTYPES, ids=lambda d: np.dtype(d).name)
def dtype(request):
    """Each test taking ``dtype`` runs in float32 and in float64."""
    return request.param
