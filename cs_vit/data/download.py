"""Fetch a file once, check its MD5, unpack archives without escaping the target folder."""
from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from cs_vit.io import temp_file_beside

_CHUNK = 1 << 20


class DownloadError(OSError):
    """The file could not be fetched (no network, bad URL, server error)."""


def md5_of(path):
    """Hex MD5 digest of the file at ``path``."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(url, dest, md5, timeout=60):
    """Download ``url`` to ``dest`` and check its MD5; returns ``dest`` as a Path.

    Skips the download when ``dest`` already has the expected MD5. Bytes go to a
    temporary file beside ``dest`` and are renamed into place only once the MD5
    matches, so an interrupted or corrupted download never leaves a bad ``dest``.
    """
    dest = Path(dest)
    if dest.is_file() and md5_of(dest) == md5:
        return dest
    out, tmp = temp_file_beside(dest, suffix=".part")
    try:
        with out:
            got = _fetch(url, out, dest.name, timeout)
        if got != md5:
            raise ValueError(
                f"MD5 mismatch for {dest.name} downloaded from {url}: expected {md5}, got "
                f"{got}; the bad file was deleted. Try again, or fetch it by hand to {dest}"
            )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest


def _fetch(url, out, label, timeout):
    """Stream ``url`` into the open file ``out`` with a progress bar; returns the MD5."""
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            size = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=size, desc=f"downloading {label}", unit="B", unit_scale=True) as bar:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        raise DownloadError(
            f"could not download {url} ({err}); check your internet connection, or fetch "
            "the file by hand"
        ) from err
    return digest.hexdigest()


def extract_tar(archive, dest):
    """Unpack the tar archive ``archive`` into the folder ``dest``.

    Refuses (ValueError, nothing extracted) archives whose members would land
    outside ``dest`` (absolute paths, ``..``) or that hold links or device files.
    """
    dest = Path(dest).resolve()
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            _check_members(archive, members, dest)
            # The "data" filter (Python >= 3.10.12 / 3.11.4) re-checks the same rules.
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(dest, members=members, **safe)
    except (tarfile.TarError, EOFError) as err:
        raise ValueError(f"{archive} is not a readable tar archive ({err}); delete it and "
                         "download it again") from err


def _check_members(archive, members, dest):
    for member in members:
        target = (dest / member.name).resolve()
        if not (member.isfile() or member.isdir()):
            raise ValueError(f"refused to extract {archive}: member {member.name!r} is a "
                             "link or special file, which a dataset archive never needs")
        if target != dest and dest not in target.parents:
            raise ValueError(f"refused to extract {archive}: member {member.name!r} would "
                             f"be written outside {dest}")
