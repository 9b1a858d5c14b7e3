# cs-vit: instructor-only (tests of the fast tier, which the student release leaves out)
import platform

import pytest

from cs_vit.fast import allocator


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="mallopt is glibc's")
def test_keep_freed_memory_sets_the_thresholds_on_glibc(monkeypatch):
    monkeypatch.delenv("CS_VIT_KEEP_FREED_MEMORY", raising=False)
    assert allocator.keep_freed_memory() is True


def test_keep_freed_memory_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("CS_VIT_KEEP_FREED_MEMORY", "0")
    assert allocator.keep_freed_memory() is False


def test_keep_freed_memory_is_a_no_op_elsewhere(monkeypatch):
    monkeypatch.delenv("CS_VIT_KEEP_FREED_MEMORY", raising=False)
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    assert allocator.keep_freed_memory() is False
