"""Writing files so that a kill never leaves half of one: write a temporary file beside the target,
flush it to disk, then rename it over the target (a rename within one folder is atomic on POSIX).

Why one module: every writer of results (tables, predictors, weights, reports) must keep the same
promise -- a reader finds the old file or the new one, never a mixture -- and a temporary name that
two writers cannot share.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """A binary file handle whose content replaces ``path`` only when the block ends without error."""
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"{target} is a folder, not a file")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            # mkstemp makes 0600 files; a report, table or weights file gets what open() would give it
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask (read by setting it and putting it back: there is no other call for it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write text (UTF-8) or bytes to ``path`` atomically."""
    with atomic_open(path) as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


def atomic_save(path: str | os.PathLike[str], save: Callable[[IO[bytes]], Any]) -> Path:
    """Let ``save(fh)`` write (``torch.save``, ``fig.savefig``, ``np.save``...) and publish the result atomically."""
    with atomic_open(path) as fh:
        save(fh)
    return Path(path)


MAX_TEXT_BYTES = 64 << 20  # a description, table or candidate larger than this is not one


def read_bytes(path: str | os.PathLike[str], what: str, limit: int = MAX_TEXT_BYTES) -> bytes:
    """A regular file's bytes, checked before it is opened: a folder, a missing file, a FIFO or device (which
    would block or never end: ``/dev/zero``) and a file over ``limit`` each get one error naming the file."""
    import stat

    from apqopt.errors import ConfigError

    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {p}") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read {what} ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{p} is a folder, not {what}")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{p} is not a regular file (a pipe or device), so not {what}")
    if st.st_size > limit:
        raise ConfigError(f"{p} is {st.st_size:,} bytes, too large for {what} (at most {limit:,})")
    return p.read_bytes()


def read_text(path: str | os.PathLike[str], what: str, limit: int = MAX_TEXT_BYTES) -> str:
    """A text file's content, or one error naming the file and what was expected of it (a folder, a
    missing file, a pipe or device, an oversized file and a binary file each get their own words instead
    of a codec or OS traceback, or a hang)."""
    from apqopt.errors import ConfigError

    p = Path(path)
    try:
        return read_bytes(p, what, limit).decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{p} is not a text file, so not {what} (binary or corrupted?)") from None


__all__ = ["atomic_open", "atomic_save", "atomic_write", "read_bytes", "read_text"]


def check_output(
    path: str | os.PathLike[str], overwrite: bool = False, inputs: tuple[str | os.PathLike[str] | None, ...] = ()
) -> Path:
    """An output path, checked before any work: an existing file is replaced only with ``overwrite``, and a
    file the same command reads (one of ``inputs``) never, even with it -- the input would be gone."""
    from apqopt.errors import ConfigError

    out = Path(path)
    for src in inputs:
        if src is not None and out.resolve() == Path(src).resolve():
            raise ConfigError(f"{out} is an input of this command; write the output elsewhere")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already exists; pass --overwrite to replace it")
    return out
