"""CIFAR-10 pickles of plain data load at every protocol; pickles that run code still do not."""
import os
import pickle

import numpy as np
import pytest

from cs_vit.data import UnsafePickleError, load_cifar10, safe_load
from tests.data_files import write_cifar


class _RunsAShellCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_cifar10_batches_pickled_at_any_protocol_load(tmp_path, protocol):
    batches = write_cifar(tmp_path / "cifar-10-batches-py", protocol=protocol)
    train, test = load_cifar10(tmp_path)
    np.testing.assert_array_equal(test.images.reshape(len(test), -1),
                                  batches["test_batch"][b"data"])
    assert train.class_names[0] == "airplane" and len(train) == 20


@pytest.mark.parametrize("protocol", [2, 5])
def test_a_pickle_that_runs_code_is_still_refused_at_protocols_2_and_5(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _RunsAShellCommand(marker)}, protocol=protocol))
    with pytest.raises(UnsafePickleError, match="global posix.system"):
        safe_load(path)
    assert not marker.exists()


def test_an_object_array_is_refused_before_its_elements_are_made(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(np.array([1, "a"], dtype=object), protocol=2))
    with pytest.raises(UnsafePickleError, match=r"refused to load .*data_batch_1: it asks for an "
                                                r"object array \(object\)"):
        safe_load(path)


def test_protocol_2_bytes_decode_only_as_latin1(tmp_path):
    path = tmp_path / "f"
    data = pickle.dumps(b"abc", protocol=2).replace(b"latin1", b"utf_16")
    path.write_bytes(data)
    with pytest.raises(UnsafePickleError, match="_codecs.encode with str and encoding 'utf_16'"):
        safe_load(path)
