"""Files written atomically: a crash, a kill or a full disk leaves the previous file intact, never a torn one.

Writes go to a temporary file in the same folder, are flushed and fsync'ed, then renamed over the target.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def atomic_write(path: str | Path, write) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, fsync, then rename onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would hide results from the rest of a group
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        cause = _os_error(err) if isinstance(err, Exception) else None
        if cause is not None and cause is not err:
            raise cause from None
        raise
    _fsync_dir(path.parent)


def _os_error(err: BaseException | None) -> OSError | None:
    """The OSError behind ``err``. PyTorch's zip writer reports a write that failed (a full disk) as a
    RuntimeError ("unexpected pos"), raised while the file's OSError was being handled."""
    while err is not None and not isinstance(err, OSError):
        err = err.__cause__ or err.__context__
    return err


def _fsync_dir(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_link(src: str | Path, dst: str | Path) -> None:
    """Make ``dst`` the file ``src`` is, without writing it again: a hard link under a temporary name, renamed
    over ``dst`` (atomic, like :func:`atomic_write`). Where the file system has no hard links, an atomic copy."""
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.link.tmp")
    try:
        tmp.unlink(missing_ok=True)
        os.link(src, tmp)
    except OSError:
        with open(src, "rb") as f:
            atomic_write(dst, lambda out: shutil.copyfileobj(f, out, 16 << 20))
        return
    try:
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(dst.parent)
