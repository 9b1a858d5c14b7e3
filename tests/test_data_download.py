import hashlib
import os

import pytest

from cs_vit.data import DownloadError, download_file, extract_tar
from tests.data_files import tar_gz


def _source(tmp_path, content=b"some dataset bytes"):
    path = tmp_path / "source.bin"
    path.write_bytes(content)
    return path, hashlib.md5(content).hexdigest()


def test_download_file_fetches_a_file_url_and_checks_md5(tmp_path):
    source, md5 = _source(tmp_path)
    dest = download_file(source.as_uri(), tmp_path / "out" / "file.bin", md5)
    assert dest.read_bytes() == source.read_bytes()
    assert os.listdir(tmp_path / "out") == ["file.bin"]


def test_download_file_skips_a_file_that_already_has_the_md5(tmp_path):
    _, md5 = _source(tmp_path)
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"some dataset bytes")
    assert download_file((tmp_path / "missing").as_uri(), dest, md5) == dest


def test_download_file_md5_mismatch_names_file_and_digests_and_deletes_it(tmp_path):
    source, md5 = _source(tmp_path)
    dest = tmp_path / "out" / "file.bin"
    with pytest.raises(ValueError, match=f"file.bin.*expected 0+, got {md5}"):
        download_file(source.as_uri(), dest, "0" * 32)
    assert os.listdir(tmp_path / "out") == []


def test_download_file_reports_an_unreachable_url(tmp_path):
    with pytest.raises(DownloadError, match="could not download"):
        download_file((tmp_path / "missing").as_uri(), tmp_path / "f", "0" * 32)


def test_extract_tar_unpacks_into_the_folder(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(tar_gz({"folder/x.txt": b"x"}))
    extract_tar(archive, tmp_path / "out")
    assert (tmp_path / "out" / "folder" / "x.txt").read_bytes() == b"x"


@pytest.mark.parametrize("name", ["../evil.txt", "/tmp/evil_cs_vit_absolute.txt"])
def test_extract_tar_refuses_members_outside_the_folder(tmp_path, name):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(tar_gz({"ok.txt": b"ok", name: b"evil"}))
    with pytest.raises(ValueError, match="outside"):
        extract_tar(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "out" / "ok.txt").exists()


def test_extract_tar_reports_a_corrupt_archive(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(b"not a tar file at all")
    with pytest.raises(ValueError, match="a.tar.gz is not a readable tar archive"):
        extract_tar(archive, tmp_path / "out")
