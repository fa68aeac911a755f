"""A native call and the Python counters that record it, as one unit under Ctrl-C.

A kernel runs without the GIL and cannot be interrupted: a SIGINT arriving meanwhile is raised as
KeyboardInterrupt the moment the call returns, before the next line counts what it did. An
optimizer's arrays then held step n + 1 while its state said n (Adam repeats a bias correction
after a checkpoint saved in ``except KeyboardInterrupt``), and a step of several runs could stop
between two of them. Inside ``Uninterrupted()`` (main thread only: Python runs signal handlers
there alone) SIGINT is recorded instead, and the handler that was installed runs on exit, once
the step is whole -- the KeyboardInterrupt then comes from there. Only steps of at least
``DEFER_SIGINT_ELEMENTS`` elements defer (the cost below); smaller ones keep the window.

The closure optimizers (L-BFGS, Newton-CG, SAM; optkern.torch's too) defer over their whole step,
whatever its size, and open a window (``Uninterrupted.call``) for what writes nothing: the closure,
a curvature solve. Their writes are Python bookkeeping between closure calls (L-BFGS's history,
Newton-CG's move param by param, SAM's record of the ascent), a window no kernel size bounds, and
a closure call (a forward and backward) costs far more than the two handler swaps. A Ctrl-C
recorded during a write raises as the next window opens (where a step puts its params back, as
when its closure raises) or at the step's end.

Files have the same need: ``replace_atomically(path)`` writes a file whole or not at all (a
temporary file beside it, renamed over it once complete); ``checked_path`` is the check of a
checkpoint's path argument, ``why_not_replaceable`` what a command checks before long work.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # (signal.signal, getsignal: the same plus enum conversions, ~10 us a swap)
import contextlib
import os
import secrets
import signal
import stat
import threading

_MAIN = threading.main_thread()
#: steps that write at least this many elements defer SIGINT (``Uninterrupted``); below it the two
#: handler swaps (~2 us idle, ~10 us on a loaded 2-core VM) would be a noticeable part of the step
#: (a 100-float Adam step: ~7-20 us), and the kernels' window for a Ctrl-C is as short
DEFER_SIGINT_ELEMENTS = 1 << 18
NO_DEFER = contextlib.nullcontext()  # (reusable: it holds nothing)


def deferring(elements: int):
    """The context a step over ``elements`` elements runs in: ``Uninterrupted()`` from
    ``DEFER_SIGINT_ELEMENTS`` on, else ``NO_DEFER`` (the handler swaps cost more than the window)."""
    return Uninterrupted() if elements >= DEFER_SIGINT_ELEMENTS else NO_DEFER


class Uninterrupted:
    """Defer SIGINT's Python handler to the end of the block (a no-op off the main thread).

    Nested inside another one (whose window is shut): a no-op, the outer one defers and its windows
    are this one's. ``call(fn)`` opens a window: ``fn`` (a user's closure: a long forward and
    backward) runs under the handler that was installed, so a Ctrl-C there raises at once, inside
    ``fn``; one recorded before the window raises as it opens, before ``fn`` runs -- where the
    caller already handles the closure's exceptions (a closure optimizer puts its params back), not
    in the middle of a write. The window is a flag read by the recording handler (no handler swap:
    a closure optimizer calls its closure dozens of times a step)."""

    __slots__ = ("_old", "_got", "_open", "_outer")

    def __enter__(self) -> Uninterrupted:
        self._old = None
        self._got: tuple | None = None
        self._open = False
        self._outer: Uninterrupted | None = None
        if threading.current_thread() is _MAIN:
            outer = getattr(_signal.getsignal(signal.SIGINT), "__self__", None)
            if isinstance(outer, Uninterrupted) and not outer._open:
                self._outer = outer  # (a step inside a step: the outer one records, and opens the windows)
                return self
            try:
                self._old = _signal.signal(signal.SIGINT, self._record)
            except ValueError:  # (an interpreter that is not the main one)
                self._old = None
        return self

    def _record(self, signum, frame) -> None:
        if self._open:  # (in a window: what the installed handler does, now)
            if callable(self._old):
                self._old(signum, frame)
        elif self._got is None:
            self._got = (signum, frame)

    def call(self, fn, *args):
        """``fn(*args)`` in a window: interruptible (see the class)."""
        owner = self._outer or self
        if owner._old is None or owner._open:  # (off the main thread, or already in a window)
            return fn(*args)
        got, owner._got = owner._got, None
        if got is not None and callable(owner._old):
            owner._old(*got)  # (the Ctrl-C recorded so far: KeyboardInterrupt before fn runs)
        owner._open = True
        try:
            return fn(*args)
        finally:
            owner._open = False

    def __exit__(self, *exc) -> None:
        old = self._old
        if old is None:
            return
        _signal.signal(signal.SIGINT, old)
        got = self._got
        if got is not None and callable(old):  # (SIG_IGN / SIG_DFL are ints: ignored, as they were)
            old(*got)  # (Python's default handler raises KeyboardInterrupt here)


def checked_path(path) -> str:
    """``path`` (str, bytes or os.PathLike) as a str naming a checkpoint file, or TypeError /
    ValueError naming ``path`` before anything is written or read (os's own errors name nothing, and
    a directory would be found only at the rename): the one rule of ``optkern.save`` / ``load`` and
    ``optkern.regularize``'s ``save_state`` / ``load_state`` / ``EarlyStopping(path=...)``."""
    try:
        path = os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError(f"path: expected a str, bytes or os.PathLike, got {type(path).__name__}") from None
    if not path or "\0" in path:
        raise ValueError(f"path: expected a file name, got {path!r}")
    # "ck.npz/" names a directory: save wrote the whole file to a temporary "..<pid>...tmp" and only
    # the rename failed (NotADirectoryError naming the temporary)
    if path.endswith(os.sep) or (os.altsep is not None and path.endswith(os.altsep)):
        raise ValueError(f"path: {path!r} ends with a path separator (a directory, not a checkpoint file)")
    try:
        mode = os.stat(path).st_mode
    except OSError:  # (none yet: save creates it, load raises FileNotFoundError)
        return path
    if stat.S_ISDIR(mode):
        raise ValueError(f"path: {path!r} is a directory, not a checkpoint file")
    # the rename replaced a FIFO or a device (root's /dev/null) by a regular file, and load
    # opened a FIFO and waited for a writer
    if not stat.S_ISREG(mode):
        raise ValueError(f"path: {path!r} is not a regular file (a FIFO, socket or device), not a checkpoint file")
    return path


@contextlib.contextmanager
def replace_atomically(path: str, binary: bool = False):
    """A file object whose content replaces ``path`` when the block ends without an exception.

    ``open(path, "w")`` truncates at once: a crash, a Ctrl-C or a full disk while writing left
    half a file, and the previous content was gone. Here the content goes to a temporary file in
    the same folder (``.<name>.<pid>.<random>.tmp``: same file system, so the rename is atomic;
    unique, so two writers do not share it), is fsync'ed, and ``os.replace`` puts it in place;
    on an exception the temporary is removed and ``path`` is untouched; after the rename the folder
    is fsync'ed too (the rename durable). A file written over
    keeps its mode (as ``open(path, "w")`` keeps it); a new one gets the umask's. A symbolic link
    is written through, as ``open`` writes it: its target is replaced, the link stays."""
    given, path = path, _through_links(path)
    folder = os.path.dirname(path) or os.curdir
    tmp = _temporary(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = None
    fd = _create(tmp, given)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            if mode is not None:
                os.chmod(tmp, mode)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if e.filename is not None or e.errno is None:  # (named already, or no errno to rebuild it from)
            raise
        # a write, flush or fsync's error names no file ("[Errno 28] No space left on device"): the
        # caller's, as open(path, "w")'s errors name it (the temporary is gone)
        raise type(e)(e.errno, e.strerror, given) from e
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def _through_links(path: str) -> str:
    """The file a write of ``path`` replaces: the target of a symbolic link (the rename replaced the
    link by a regular file beside it, and the file it pointed to kept the old content, which a
    later read of that name took for current), dangling or not; ``path`` itself otherwise."""
    return os.path.realpath(path) if os.path.islink(path) else path


def _temporary(path: str) -> str:
    """The name of ``path``'s temporary: beside it (the same file system, so the rename is atomic),
    unique (two writers do not share it), hidden."""
    folder = os.path.dirname(path) or os.curdir
    return os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _create(tmp: str, path: str) -> int:
    """A descriptor of the new file ``tmp``, ``path``'s temporary. A folder it cannot be created in
    raised an error naming the temporary, a file the caller never named (".ck.npz.4242.9f3c01aa.tmp"):
    the error of ``open(path, "w")`` instead, the same type and errno, on ``path``."""
    try:
        return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise type(e)(e.errno, e.strerror, path) from None


def why_not_replaceable(path: str) -> str | None:
    """Why ``replace_atomically(path)`` would fail, or None: for a command that writes ``path`` after
    long work (``bench --json``) to check first. What the writer needs: ``path`` a regular file or
    none (a FIFO, socket or device would be replaced by a regular file; opening a FIFO to test it
    waited for a reader), a temporary creatable beside it (the folder writable: a writable file in
    a read-only folder passed a check that opened the file), and an existing file writable (not
    needed by the rename, but a read-only file is kept from being written over)."""
    given, path = path, _through_links(path)
    if os.path.isdir(path):
        return "is a directory"
    if os.path.exists(path) and not os.path.isfile(path):
        return "is not a regular file (a FIFO, socket or device)"
    tmp = _temporary(path)
    try:
        os.close(_create(tmp, given))
    except OSError as e:
        return f"cannot write the file ({e.strerror or e})"
    os.unlink(tmp)
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return "cannot write the file (it is read-only)"
    return None


def _fsync_dir(folder: str) -> None:
    """The rename itself made durable (POSIX); some systems cannot open a directory."""
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
