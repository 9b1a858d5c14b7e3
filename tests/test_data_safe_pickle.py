import os
import pickle

import numpy as np
import pytest

from cs_vit.data import UnsafePickleError, safe_load


class _RunsAShellCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_safe_load_refuses_a_pickle_that_calls_os_system_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _RunsAShellCommand(marker)}, protocol=3))
    with pytest.raises(UnsafePickleError, match="system") as err:
        safe_load(path)
    assert str(path) in str(err.value)
    assert not marker.exists()


def test_safe_load_reads_numpy_arrays_dicts_and_lists(tmp_path):
    content = {b"data": np.arange(12, dtype=np.uint8).reshape(3, 4), b"labels": [1, 2, 3],
               b"name": b"batch"}
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps(content, protocol=3))
    loaded = safe_load(path)
    np.testing.assert_array_equal(loaded[b"data"], content[b"data"])
    assert loaded[b"labels"] == [1, 2, 3] and loaded[b"name"] == b"batch"


def test_safe_load_accepts_the_numpy_1_module_name(tmp_path):
    data = pickle.dumps(np.arange(5, dtype=np.uint8), protocol=3)
    path = tmp_path / "old"
    path.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    np.testing.assert_array_equal(safe_load(path), np.arange(5))


def test_safe_load_refuses_other_numpy_globals(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(pickle.dumps(np.load, protocol=3))
    with pytest.raises(UnsafePickleError, match="numpy.load"):
        safe_load(path)
