"""Atomic file writes: a reader never sees a half-written file.

The files cdl writes (model and weights files, converted data sets, ONNX
exports) go through ``atomic_write``: the contents go to a temporary file
``.<name>.<pid>.<random>.tmp`` in the target's directory, which is flushed,
fsynced and renamed over the target with ``os.replace``. A process killed mid-write leaves the target as it was and
its temporary file behind; the next write to the same target removes such
leftovers once their writer is gone (``remove_stale_temp_files``; the rule
is given in the file format's specification, ``cdl.saving.format``).
"""
import os
import re
import stat
import tempfile
import time

__all__ = ["atomic_write", "remove_stale_temp_files", "STALE_AFTER"]

#: Seconds without a write after which any temporary file counts as stale.
STALE_AFTER = 3600.0


def atomic_write(path, write_contents):
    """Write a file through a temporary file in the same directory and ``os.replace``.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write. An existing file keeps its permissions; a new one
        gets those the umask allows.
    write_contents : callable
        Called with the temporary file, opened in binary mode, to write
        everything. If it raises, the temporary file is removed, the target
        is left as it was and the exception propagates.

    Afterwards, temporary files that killed writes to the same path left
    behind are removed (see ``remove_stale_temp_files``).

    Examples
    --------
    >>> atomic_write("hello.txt", lambda f: f.write(b"hello"))
    >>> open("hello.txt", "rb").read()
    b'hello'
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = _umask_mode()
    # The pid in the name tells a later save whether the writer is still alive.
    fd, tmp = tempfile.mkstemp(prefix=f"{_temp_prefix(path)}{os.getpid()}.", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
            write_contents(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)
    remove_stale_temp_files(path)


def remove_stale_temp_files(path, now=None):
    """Remove the temporary files of ``path`` whose writer is gone.

    Those are regular files in ``path``'s directory whose name is exactly
    ``.<name>.<pid>.<random>.tmp`` for this target (or ``.<name>.<random>.tmp``,
    the pattern before the pid was added) and whose writer's pid is not a
    running process on this machine (POSIX only), or which have not been
    modified for ``STALE_AFTER`` seconds. Errors are ignored: this is
    housekeeping.

    Parameters
    ----------
    path : str or os.PathLike
        The target whose leftovers to remove.
    now : float, optional
        The current time (``time.time()`` by default).

    Examples
    --------
    >>> remove_stale_temp_files("hello.txt")
    """
    path = os.fspath(path)
    pattern = _stale_temp_pattern(path)
    directory = os.path.dirname(os.path.abspath(path))
    now = time.time() if now is None else now
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode):
                continue
            pid = match.group(1)
            idle = now - info.st_mtime
            if idle >= STALE_AFTER or (pid is not None and not _process_alive(int(pid))):
                os.unlink(entry.path)
        except OSError:
            pass


def _umask_mode():
    """Permissions of a newly created file under the current umask (best effort)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o644


def _temp_prefix(path):
    """Start of the names of ``path``'s temporary files: ``.<name>.``."""
    return "." + os.path.basename(path)[:64] + "."


def _fsync_directory(directory):
    """Make the rename durable where the platform allows it."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _stale_temp_pattern(path):
    """Names of ``path``'s temporary files: ``.<name>.<pid>.<random>.tmp``, or
    ``.<name>.<random>.tmp`` as written before the pid was added (group 1 is
    the pid, or None). ``<random>`` is the 8 characters ``tempfile`` draws."""
    return re.compile(re.escape(_temp_prefix(path)) + r"(?:([1-9][0-9]{0,9})\.)?"
                      r"[a-z0-9_]{8}\.tmp")


def _process_alive(pid):
    """Whether ``pid`` is a running process on this machine (POSIX); True when unsure."""
    if os.name != "posix" or pid == os.getpid():
        return True   # os.kill would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True   # e.g. PermissionError: it exists but belongs to another user
    return True
