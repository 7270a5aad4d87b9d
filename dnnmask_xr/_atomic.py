"""Write files so that they appear whole or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dnnmask_xr._args import path_arg


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it to ``path`` on success.

    The temporary file lives in the target's folder so that the final
    ``os.replace`` is a rename on one file system: readers see either the old
    file or the complete new one. On any exception (``KeyboardInterrupt``
    included) the temporary file is removed and the target is left as it was.

    Parameters
    ----------
    path
        The file to create or replace.

    Yields
    ------
    Path
        Where to write; it exists (empty) when yielded.
    """
    target = Path(path_arg(path, "output"))
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates files readable by the owner only; give the result
        # the permissions an ordinary new file would get.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
