# cs-vit: instructor-only (part of the grading runtime)
"""Run untrusted code in a child process under limits: CPU time, memory, file size, wall clock.

The child starts a session of its own; whatever is left of its process group is
killed when it ends or runs out of time. As root (Gradescope runs the autograder
as root) the child also runs as an unprivileged user, ``nobody`` or
``CS_VIT_GRADER_UID``: it cannot read the root-only expected values, write the
results folder or signal the grader, and every process left with that user is
killed after each run (a daemon that left the process group included). Without
root, or where that user cannot run the interpreter, the child runs as the
grading user: the limits hold, but nothing keeps it from the grader's files.
"""
from __future__ import annotations

import functools
import os
import pwd
import resource
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass

UID_VARIABLE = "CS_VIT_GRADER_UID"
POLL_S = 0.05
LOG_TAIL_CHARS = 1500
MAX_PROCESSES = 64  # per sandbox user: numpy's threads count too


@dataclass(frozen=True)
class Limits:
    """What one child may use: CPU seconds, wall-clock seconds, address space and file size."""

    cpu_s: float
    wall_s: float
    memory_mb: int
    file_mb: int = 64


@dataclass
class Outcome:
    """How a child ended: its exit status (None if stopped for time), times and output tail."""

    returncode: int | None
    wall_s: float
    cpu_s: float
    log_tail: str

    def describe(self, limits):
        """Why a child that returned no results ended, in words for the student."""
        if self.returncode is None:
            return (f"did not finish within its {limits.wall_s:g} s and was stopped (an endless "
                    "loop, or code waiting for something that never comes?)")
        if self.returncode >= 0:
            return (f"ended (exit status {self.returncode}) before returning its results: does "
                    "your code call sys.exit() or os._exit(), or crash when it is imported?")
        name = signal.Signals(-self.returncode).name
        reasons = {"SIGXCPU": f"it used up its {limits.cpu_s:g} s of CPU time",
                   "SIGKILL": (f"it went over a limit ({limits.cpu_s:g} s of CPU time, "
                               f"{limits.memory_mb} MB of memory)"),
                   "SIGXFSZ": f"it wrote a file larger than {limits.file_mb} MB",
                   "SIGSEGV": "it crashed (segmentation fault)"}
        return f"was stopped by {name}: {reasons.get(name, 'it received that signal')}"


def _apply_limits(limits, isolated):
    """In the child, before it runs anything: lower its resource limits."""
    cpu = max(1, int(limits.cpu_s))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    memory = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    size = limits.file_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if isolated:  # per user: only meaningful for the sandbox's own user
        resource.setrlimit(resource.RLIMIT_NPROC, (MAX_PROCESSES, MAX_PROCESSES))


class Sandbox:
    """Runs children under :class:`Limits`, as an unprivileged user where possible."""

    def __init__(self, python=sys.executable):
        self.uid = self.gid = None
        self.note = "not running as root: the child processes run as the grading user"
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            uid, gid = int(os.environ.get(UID_VARIABLE, nobody.pw_uid)), nobody.pw_gid
            try:
                probe = subprocess.run([python, "-c", "import numpy"], user=uid, group=gid,
                                       extra_groups=[], capture_output=True, cwd="/",
                                       timeout=120).returncode
            except OSError:  # not even allowed to start it
                probe = None
            if probe == 0:
                self.uid, self.gid = uid, gid
                self.note = f"child processes run as uid {uid}"
            else:
                self.note = (f"uid {uid} cannot run {python} (it is in a folder only root may "
                             "enter?): the child processes run as root")

    @property
    def isolated(self):
        return self.uid is not None

    def make_private(self, path):
        """Create the folder ``path`` for the child alone (its owner, mode 0700)."""
        os.mkdir(path, 0o700)
        if self.isolated:
            os.chown(path, self.uid, self.gid)

    def run(self, argv, cwd, env, limits, log_path):
        """Run ``argv`` to its end or its limits; returns an :class:`Outcome`."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        user = dict(user=self.uid, group=self.gid, extra_groups=[]) if self.isolated else {}
        with open(log_path, "wb") as log:
            child = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                preexec_fn=functools.partial(_apply_limits, limits, self.isolated), **user)
            finished = self._wait(child.pid, started + limits.wall_s)
            self._kill_group(child.pid)
            child.wait()
        if self.isolated:
            self._kill_user()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return Outcome(child.returncode if finished else None, time.monotonic() - started, cpu,
                       _tail(log_path))

    @staticmethod
    def _wait(pid, deadline):
        """Whether the child ended before ``deadline``; it is left unreaped, holding its group."""
        while time.monotonic() < deadline:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
            time.sleep(POLL_S)
        return False

    @staticmethod
    def _kill_group(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _kill_user(self):
        """Kill every process of the sandbox user, from a fork that becomes that user.

        kill(-1) signals every process the caller may signal except itself, so
        this reaches a daemon that left the child's process group.
        """
        pid = os.fork()
        if pid == 0:
            try:
                os.setgroups([])
                os.setgid(self.gid)
                os.setuid(self.uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)


def _tail(path):
    with open(path, "rb") as f:
        f.seek(max(0, os.fstat(f.fileno()).st_size - LOG_TAIL_CHARS))
        return f.read().decode("utf-8", "replace")


def read_regular_file(path, max_bytes, owner=None):
    """The bytes of ``path`` if it is a regular file (not a link) of at most ``max_bytes``.

    Raises ValueError otherwise. A child (or a submission) could leave a link to
    the expected values where its results belong; ``O_NOFOLLOW``, the type,
    link-count and ``owner`` checks keep the grader from reading through it.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO must not block
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise ValueError(f"{path} is not a plain file")
        if owner is not None and info.st_uid != owner:
            raise ValueError(f"{path} does not belong to uid {owner}")
        if info.st_size > max_bytes:
            raise ValueError(f"{path} is larger than {max_bytes} bytes")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(max_bytes + 1)[:max_bytes]
    finally:
        os.close(fd)
