"""The run folder that ``cs-vit train`` owns while it trains.

    with RunFolder("runs/a", resume=False, overwrite=False) as run:
        ...                                   # train; checkpoints land in run.path

- **Locked.** A lock file in the folder is held (``flock``) by the training
  process, so a second ``cs-vit train`` on the same folder is refused. The
  kernel releases it however the process ends, SIGKILL included; the file left
  behind by a dead process names its pid and is simply taken over.
- **Never replaced by accident.** A folder that already holds something is
  refused unless the run is resumed (``--resume``) or replaced
  (``--overwrite``, and only a cs-vit run folder).
- **Nothing lost.** A replaced run is moved aside, to ``<folder>.replaced``,
  and deleted only when the new run ends having written a checkpoint (or, if it
  was killed, when the folder is next used). A run that fails or is interrupted
  before its first checkpoint leaves everything as it found it: the old run is
  moved back, and a folder it created is removed.
- **Split recorded.** ``split.json`` lists the image files a run trains and tests
  on, so that resuming or evaluating on data whose split changed is refused.
"""
from __future__ import annotations

import fcntl
import os
import shutil

from cs_vit.io import atomic_write_json, read_json
from cs_vit.solvers.checkpoint import check_epochs, checkpoint_path, load_checkpoint

LOCK_NAME = ".cs-vit.lock"
RUN_ARGS = "run_args.json"
SPLIT = "split.json"
REPLACED_SUFFIX = ".replaced"


class RunFolderError(ValueError):
    """The run folder cannot be used as asked (in use, not empty, not a run)."""


class RunFolder:
    """Context manager: owns ``path`` for one training run (see the module docstring)."""

    def __init__(self, path, resume=False, overwrite=False):
        self.path = os.fspath(path)
        self.resume, self.overwrite = resume, overwrite
        self.replaced = os.path.abspath(self.path) + REPLACED_SUFFIX
        self.lock_fd = None
        self.owned = self.created = self.moved_aside = False
        self.written = []

    def __enter__(self):
        try:
            self._claim()
        except BaseException:
            self._finish(failed=True)
            raise
        return self

    def __exit__(self, kind, error, traceback):
        self._finish(failed=kind is not None)
        return False

    def _claim(self):
        if self.resume:
            if not os.path.isfile(os.path.join(self.path, RUN_ARGS)):
                raise RunFolderError(f"cannot resume, {os.path.join(self.path, RUN_ARGS)} not "
                                     f"found (is {self.path} a cs-vit run?)")
            self.lock_fd = _lock(self.path)
            self.owned = True
            return
        self.created = not os.path.isdir(self.path)
        os.makedirs(self.path, exist_ok=True)
        self.lock_fd = _lock(self.path)
        self.owned = True
        if os.path.lexists(self.replaced) and not self.has_checkpoint():
            raise RunFolderError(
                f"{self.replaced} holds the run that an earlier --overwrite of {self.path} "
                "replaced, kept because that new run stopped before its first checkpoint; move "
                f"it back over {self.path}, or delete it, then try again")
        if _contents(self.path):
            self._move_aside()

    def _move_aside(self):
        """Move the run in ``path`` to ``<path>.replaced`` (``--overwrite``), or refuse."""
        if not self.overwrite:
            raise RunFolderError(
                f"{self.path} already holds a run; continue it with --resume, replace it with "
                f"--overwrite (it is kept in {self.replaced} until the new run ends with a "
                "checkpoint), or choose another --out")
        if not os.path.isfile(os.path.join(self.path, RUN_ARGS)):
            raise RunFolderError(f"{self.path} is not empty and is not a cs-vit run folder (it has "
                                 f"no {RUN_ARGS}), so --overwrite will not replace it; choose a "
                                 "new or empty --out")
        # A run moved aside earlier, whose replacement went on to write a checkpoint.
        shutil.rmtree(self.replaced, ignore_errors=True)
        os.rename(self.path, self.replaced)
        self.moved_aside = True
        os.remove(os.path.join(self.replaced, LOCK_NAME))
        os.close(self.lock_fd)
        self.lock_fd = None
        os.makedirs(self.path)
        self.lock_fd = _lock(self.path)

    def file(self, name):
        """The path of ``name`` in the run folder, remembered as written by this run."""
        self.written.append(name)
        return os.path.join(self.path, name)

    def has_checkpoint(self):
        return os.path.exists(checkpoint_path(self.path))

    def check_resumable(self, num_epochs):
        """Refuse to resume a run with no checkpoint, or with fewer epochs than it has done."""
        if not self.has_checkpoint():
            raise RunFolderError(f"cannot resume {self.path}: it has no checkpoint, so its run "
                                 "stopped before the end of its first epoch; start it again "
                                 "with --overwrite")
        path = checkpoint_path(self.path)
        check_epochs(path, load_checkpoint(path)[3]["epoch"], num_epochs)

    def interrupted(self):
        """The line for a Ctrl-C: where the last checkpoint is and how to resume (or that none is)."""
        if not self.has_checkpoint():
            return (f"interrupted before the first checkpoint of {self.path}, so there is "
                    f"nothing to resume{self._replaced_note()}")
        path = checkpoint_path(self.path)
        try:
            epoch = f" (end of epoch {load_checkpoint(path)[3]['epoch']})"
        except ValueError:
            epoch = ""
        return (f"interrupted; the last checkpoint{epoch} is {path}; continue the run with: "
                f"cs-vit train --resume --out {self.path}")

    def _finish(self, failed):
        """Release the folder; a new run that stopped before any checkpoint is undone.

        Nothing is touched unless this run owned the folder (held its lock).
        """
        if not self.owned:
            return
        undo = failed and not self.resume and not self.has_checkpoint()
        if self.has_checkpoint() and os.path.isdir(self.replaced):
            shutil.rmtree(self.replaced, ignore_errors=True)
        if undo:
            for name in self.written:
                if os.path.exists(os.path.join(self.path, name)):
                    os.remove(os.path.join(self.path, name))
        self._release()
        if undo and (self.created or self.moved_aside):
            try:
                os.rmdir(self.path)
            except OSError:
                return
            if self.moved_aside:
                os.rename(self.replaced, self.path)

    def _release(self):
        """Remove the lock file and close it (the lock goes with the descriptor)."""
        if self.lock_fd is not None:
            try:
                os.remove(os.path.join(self.path, LOCK_NAME))
            except FileNotFoundError:
                pass
            os.close(self.lock_fd)
            self.lock_fd = None

    def _replaced_note(self):
        """Where a replaced run is, for the message about a new run that stopped early."""
        if not self.moved_aside:
            return ""
        if os.path.isdir(self.replaced):
            return f"; the run it was replacing is kept in {self.replaced}"
        return f"; the run it was replacing is back in {self.path}"


def _contents(path):
    return [name for name in os.listdir(path) if name != LOCK_NAME]


def _lock(folder):
    """An open descriptor holding the exclusive lock of ``folder``; refused if another holds it."""
    path = os.path.join(folder, LOCK_NAME)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderError(f"{folder} is in use by another cs-vit train (process {owner}); "
                                 "wait for it to finish, or choose another --out") from None
        # Its holder may have removed the file between our open and our lock: lock the new one.
        if os.path.exists(path) and os.path.samestat(os.fstat(fd), os.stat(path)):
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def record_split(run, train_data, test_data):
    """Write ``split.json``: the image files the run trains and tests on (data read from files).

    A resumed run adds the files it sees now to those recorded before.
    """
    if train_data.files is None:
        return
    recorded = recorded_split(run.path) or {"train": [], "test": []}
    atomic_write_json(run.file(SPLIT), {
        "train": sorted(set(recorded["train"]) | set(train_data.files)),
        "test": sorted(set(recorded["test"]) | set(test_data.files))})


def recorded_split(run_dir):
    """The run's ``split.json`` as {"train": [...], "test": [...]}, or None if it has none."""
    path = os.path.join(run_dir, SPLIT)
    if not os.path.exists(path):
        return None
    fix = "restore it from the run, or delete it if the data has not changed since the run"
    split = read_json(path, fix)
    if not (isinstance(split, dict)
            and all(isinstance(split.get(key), list) for key in ("train", "test"))):
        raise ValueError(f"{path} does not list the run's train and test files; {fix}")
    return split


def check_split(run_dir, train_data, test_data):
    """Refuse data whose images changed split since the run in ``run_dir`` recorded its split."""
    recorded = recorded_split(run_dir)
    if recorded is None or test_data.files is None:
        return
    moved = sorted(set(test_data.files) & set(recorded["train"]))
    moved += sorted(set(train_data.files) & set(recorded["test"]))
    if moved:
        raise ValueError(
            f"{len(moved)} images changed split since the run in {run_dir} recorded its split "
            f"(e.g. {moved[0]}), so the model would be tested on images it trained on, or trained "
            "on test images; use the data, test fraction and train/test folders the run used")
