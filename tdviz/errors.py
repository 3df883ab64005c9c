"""The one exception type for errors a user can cause, and the sentence for a failed file operation."""

from __future__ import annotations

import errno


class TdvizError(ValueError):
    """A user-facing error: its message is one sentence naming the input and the fix."""


_FIXES = {
    errno.EROFS: "the file system is read-only: choose a writable --out",
    errno.EACCES: "permission denied: choose a folder you may write to (--out) or fix its permissions",
    errno.EPERM: "permission denied: choose a folder you may write to (--out) or fix its permissions",
    errno.ENOSPC: "the disk is full: free space and run again (a --resume run keeps what was finished)",
    errno.EDQUOT: "the disk quota is exceeded: free space and run again (a --resume run keeps what was finished)",
    errno.EFBIG: "the file grew past the size this process may write: raise the limit or free space",
    errno.EEXIST: "something is already there: choose another --out",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another --out",
    errno.EISDIR: "it is a folder: name a file instead",
    errno.ENOENT: "it does not exist: check the path",
    errno.ENAMETOOLONG: "the name is too long: choose a shorter --out",
    errno.ELOOP: "the path loops through symbolic links: fix the links",
}


def os_error_message(exc: OSError) -> str:
    """One sentence for a failed file operation: which file, what happened, how to fix it."""
    where = exc.filename if exc.filename is not None else "a file"
    what = exc.strerror or type(exc).__name__
    fix = _FIXES.get(exc.errno, "check the path and the disk")
    return f"Cannot use {str(where)!r} ({what}): {fix}."
