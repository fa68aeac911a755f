"""The study's runs, several at once in worker processes (``--jobs``).

The runs are independent: each depends only on its optimizer, normalization and seed, so a
worker computes bit for bit what the one-process loop computes (tests/test_study_jobs.py). The
one thing runs share is the epoch-0 measurement of a (normalization, seed): every run of it
starts from the same weights. The first run of each pair goes out first and returns its
epoch-0 measurement with its record; the pair's other runs go out with that measurement, so it
is computed once per pair, as in one process.

Workers are spawned, not forked: a fork of a process whose OpenMP team has run may hang in
the child. They ignore Ctrl-C while idle (an idle worker killed by it would break the pool)
and take it while training, where the run stops and returns what it measured, as a run of the
one-process loop does (unless the study ignores Ctrl-C, as a shell's background job does: then
its runs do too, see run_pool). While the study turns SIGTERM into Ctrl-C (the command line) an idle worker
ignores SIGTERM too: one killed by a SIGTERM to the process group (``timeout``, a job scheduler)
broke the pool, and the runs still training lost their records.

A signal is never set to SIG_IGN or SIG_DFL while one may be pending (delivered, its Python
handler not yet run): CPython then prints ``OSError: Signal 15 ignored due to race condition``
as a traceback. A worker gets the group's SIGTERM and the forwarded SIGINT at nearly the same
time, so the first handler sets the second to ``_ignore``, a Python handler that does nothing.

A worker is started with SIGINT and SIGTERM blocked (``_signals_blocked``: a child keeps its
parent's signal mask through fork and exec, as multiprocessing's resource tracker relies on) and
unblocks them in ``_init``, once its idle handlers are set: one signalled while it started up
(importing, unpickling the data) died of it, which broke the pool, and the runs in flight were
named missing. The signal now waits, and is handled as one that comes a moment later.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

_WORKER: dict[str, Any] = {}


def default_jobs(cfg, runs: int) -> int:
    """One run per available logical CPU (each run uses ``cfg.threads`` of them; ``_cpus_of_process``:
    the affinity mask and a cgroup v2 or v1 quota), at most one per run."""
    from ..threads import _cpus_of_process

    return max(1, min(runs, _cpus_of_process() // max(1, int(cfg.threads))))


def _init(train, val, cfg, sigterm_handled: bool = False, parent: int = 0, sigint_taken: bool = True) -> None:
    from .._malloc import pin_glibc_thresholds

    _WORKER.update(
        train=train, val=val, cfg=cfg, sigterm_handled=sigterm_handled, parent=parent, sigint_taken=sigint_taken
    )
    _settle()
    if hasattr(signal, "pthread_sigmask"):  # (blocked since the worker started: _signals_blocked)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STARTUP_SIGNALS)
    pin_glibc_thresholds()  # as in the parent process (optkern.cli)


#: The signals a worker holds blocked from its start to the end of ``_init`` (the module's docstring).
_STARTUP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _signals_blocked():
    """``_STARTUP_SIGNALS`` blocked in this thread while it may start workers (``submit``): a
    worker starts with them blocked. Those sent to the study meanwhile come when the block ends
    (the pool's threads, started by the first ``submit``, keep them blocked: they reach this one)."""
    if not hasattr(signal, "pthread_sigmask"):  # (not POSIX)
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STARTUP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def _further_interrupts_ignored():
    """A further Ctrl-C (or a SIGTERM taken as one) ignored while an interrupted study collects
    the records of its runs in flight: it escaped the wait, no one signalled the run queued for a
    worker any more (see run_pool), and the pool's shutdown joined it while it trained to its last
    epoch: the study hung, every Ctrl-C after it in vain. Only a Python handler is swapped (the
    main thread's; not SIG_IGN, see the module's docstring); the old one is put back once the
    signals that came meanwhile ran on ``_ignore``."""
    import threading

    old = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(old):
        yield  # (Python raises KeyboardInterrupt in the main thread alone; SIGINT ignored: none)
        return
    signal.signal(signal.SIGINT, _ignore)
    try:
        yield
    finally:
        if hasattr(signal, "pthread_sigmask"):  # (runs the Python handlers of pending signals)
            signal.pthread_sigmask(signal.SIG_BLOCK, [])
        signal.signal(signal.SIGINT, old)


def _ignore(signum, frame) -> None:
    """A later SIGINT's or SIGTERM's handler: nothing (see the module's docstring: not SIG_IGN)."""


def _idle_sigterm(signum, frame) -> None:
    """An idle worker's SIGTERM while the study takes SIGTERM as Ctrl-C: the study got it too, and
    ends this worker once the runs in flight returned their records. An orphan (the study was
    killed) exits."""
    if os.getppid() != _WORKER.get("parent"):
        os._exit(128 + signum)


def _settle() -> None:
    """The idle worker's handlers, set after any signal still pending ran on ``_ignore``."""
    signal.signal(signal.SIGINT, _ignore)
    signal.signal(signal.SIGTERM, _ignore)
    if hasattr(signal, "pthread_sigmask"):  # (POSIX: runs the Python handlers of pending signals)
        signal.pthread_sigmask(signal.SIG_BLOCK, [])
    if not _WORKER.get("sigterm_handled"):  # (the API without a SIGTERM handler: ends as the study does)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    elif _WORKER.get("parent"):
        signal.signal(signal.SIGTERM, _idle_sigterm)


def _run(name: str, norm: str, seed: int, epoch0) -> tuple[dict, Any]:
    """One run in a worker: (its record, its epoch-0 measurement)."""
    from ..threads import limit_threads
    from .runner import epoch0_key, train_run

    cfg = _WORKER["cfg"]
    key = epoch0_key(name, norm, seed)
    cache = {} if epoch0 is None else {key: epoch0}
    rec: dict = {}
    try:  # (the handlers set inside: a signal between the two still returns the record)
        if _WORKER.get("sigint_taken", True):  # (see run_pool: not where the study ignores Ctrl-C)
            signal.signal(signal.SIGINT, _interrupt_once)
        signal.signal(signal.SIGTERM, _interrupt_once)  # (a SIGTERM to the study's process group: as Ctrl-C)
        with limit_threads(cfg.threads):
            train_run(name, norm, _WORKER["train"], _WORKER["val"], cfg, rec, progress=False, cache=cache, seed=seed)
    except KeyboardInterrupt:
        rec["status"] = "interrupted"
    finally:
        _settle()
    return rec, cache.get(key)


def _interrupt_once(signum, frame) -> None:
    """A run's SIGINT and SIGTERM handler: the first one stops the run, later ones are ignored. A
    Ctrl-C at a terminal reaches a worker twice (from the terminal, and forwarded by the parent, see
    run_pool), a SIGTERM to the process group too (then SIGINT from the parent): a second
    KeyboardInterrupt while the run is saving what it measured would lose it."""
    signal.signal(signal.SIGINT, _ignore)
    signal.signal(signal.SIGTERM, _ignore)
    raise KeyboardInterrupt


def _forward_interrupt(ex, signum: int | None = signal.SIGINT) -> None:
    """Send ``signum`` (SIGINT; SIGTERM where the runs ignore SIGINT, see run_pool) to the pool's
    workers: a SIGINT sent to this process alone (``kill -INT``, a job scheduler, ``timeout -s
    INT``) reaches no worker, and the runs in flight went on to their last epoch while the study
    waited for them. Idle workers ignore it (``_init``). None: nothing sent (``_stop_signals``)."""
    if signum is None:
        return
    for proc in list((getattr(ex, "_processes", None) or {}).values()):
        try:
            os.kill(proc.pid, signum)
        except (OSError, AttributeError, TypeError):  # already gone
            pass


def _kill_workers(ex) -> None:
    """SIGKILL the pool's workers (a broken pool's, or an interrupted study's once every record is
    in). A broken pool's terminate() (SIGTERM) does not stop a run that
    ignores a second signal while it saves its record (``_interrupt_once``); that worker then waits
    for the next run, on the call queue's lock if the worker that died held it (one idle in the
    queue, killed by a SIGTERM to the process group), and the pool's shutdown joined it forever:
    the study hung (``timeout -s TERM`` about one time in four). Their records are lost already
    (the pool failed every future it had)."""
    for proc in list((getattr(ex, "_processes", None) or {}).values()):
        try:
            proc.kill()
        except (OSError, AttributeError, ValueError):  # already gone, or closed
            pass


def _stop_signals(sigint, sigterm) -> tuple[bool, bool, int | None]:
    """From the study's SIGINT and SIGTERM handlers (``signal.getsignal``'s): whether a Python SIGTERM
    handler is set (the command line's: idle workers then leave SIGTERM to it), whether the runs take
    Ctrl-C, and the signal that stops the runs of an interrupted study (None: none does).

    A study started with SIGINT ignored (a shell's background job: ``optkern study &`` in a script)
    goes on through a Ctrl-C at the terminal, which reaches its whole process group, as it does with
    --jobs 1: so do its runs. Only SIG_IGN says so: SIG_DFL (a library caller that reset SIGINT) or
    None (a handler set from C) still end the study on Ctrl-C, and runs that ignored it trained on,
    orphaned, after the study died. Stopped by SIGTERM then, only where the workers take it while
    idle (``_init``: with no Python SIGTERM handler an idle worker dies of it, which breaks the pool
    and loses the records of the runs in flight); else no signal, and the runs finish."""
    handled = callable(sigterm)
    sigint_taken = sigint is not signal.SIG_IGN
    stop = signal.SIGINT if sigint_taken else signal.SIGTERM if handled else None
    return handled, sigint_taken, stop


def _collect_interrupted(ex, running: dict, records: list, signum: int | None = signal.SIGINT) -> None:
    """An interrupted study's wait for the records of its runs in flight (the others cancelled);
    ``signum``: what stops a run (``_forward_interrupt``; None: nothing does, they run to the end)."""
    _forward_interrupt(ex, signum)
    left = {fut: i for fut, i in running.items() if not fut.cancel()}
    while left:
        finished, _ = wait(list(left), timeout=0.25)
        for fut in finished:
            i = left.pop(fut)
            try:
                records[i].update(fut.result()[0])
            except Exception:  # a broken pool
                pass
        if left:
            # A run queued for a worker (the pool hands one more than it has workers to its queue,
            # where cancel() cannot take it back) starts after the signal above, on a worker that
            # ignored it while idle: it trained to its last epoch while the study waited. Signalled
            # again until it returns (the others ignore it meanwhile).
            _forward_interrupt(ex, signum)


def _say_done(rec: dict, done: int, total: int, seeds: int) -> None:
    hist = rec.get("history", {})
    acc = hist.get("val_acc") or [float("nan")]
    label = f"{rec.get('optimizer')}{'+' + rec['norm'] if rec.get('norm') != 'none' else ''}"
    label += f" seed {rec.get('seed')}" if seeds > 1 else ""
    # (divergence.stuck, divergence.collapsed)
    status = "stuck" if rec.get("stuck") else "collapsed" if rec.get("collapsed") else rec.get("status", "?")
    # a diverged run's history ends before it diverged: its last accuracy is no result of the run
    what = f"at epoch {rec.get('diverged_epoch')}" if status == "diverged" else f"val acc {acc[-1]:.3f}"
    print(
        f"{label:<22} {status:<9} {rec.get('time_s', 0.0):6.1f}s  {what}  ({done}/{total} runs)",
        file=sys.stderr,
        flush=True,
    )


def run_pool(tasks: list, records: list, train, val, cfg, jobs: int, progress: bool, on_run_done=None) -> bool:
    """Run ``tasks`` (name, norm, seed) on ``jobs`` workers, filling ``records`` (same order) in
    place; True if interrupted."""
    ctx = multiprocessing.get_context("spawn")
    from .._atomic import Uninterrupted
    from .report import run_label
    from .runner import epoch0_key

    pending: dict[tuple, list[int]] = {}  # epoch0_key -> runs waiting for its epoch-0 measurement
    running: dict[Future, int] = {}
    handling: int | None = None  # the run whose result is being handled (named if that raises)
    done = 0
    try:
        handled, sigint_taken, stop = _stop_signals(signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
        init = (train, val, cfg, handled, os.getpid(), sigint_taken)
        with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init, initargs=init) as ex:

            def submit(i: int, epoch0) -> None:
                name, norm, seed = tasks[i]
                # (a Ctrl-C now comes once the future is in ``running``.) The mask keeps the signals
                # from the worker being started; Uninterrupted defers the KeyboardInterrupt itself: a
                # SIGINT to the process reaches another thread that does not block it (OpenMP's, BLAS')
                # and Python raises it here anyway -- between the pool's p.start() and its record of p
                # it left a worker no one knew, not killed, waiting for work after the study exited.
                with Uninterrupted(), _signals_blocked():
                    running[ex.submit(_run, name, norm, seed, epoch0)] = i

            try:
                for i, (name, norm, seed) in enumerate(tasks):
                    key = epoch0_key(name, norm, seed)
                    if key in pending:
                        pending[key].append(i)
                    else:
                        pending[key] = []
                        submit(i, None)
                while running:
                    finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for fut in finished:
                        i = handling = running.pop(fut)
                        rec, epoch0 = fut.result()
                        records[i].update(rec)
                        done += 1
                        for j in pending.pop(epoch0_key(*tasks[i]), []):
                            submit(j, epoch0)
                        if progress:
                            _say_done(rec, done, len(tasks), cfg.seeds)
                        if on_run_done is not None:
                            on_run_done()
                        handling = None
            except BrokenProcessPool:  # (a worker died: out of memory, killed)
                _kill_workers(ex)
                raise
            except Exception as e:
                # Raised here, not by a worker dying: the handling of a run's result (``on_run_done``
                # writing results.json on a full disk, the progress line) or the run's own error.
                # The ``with``'s shutdown waited for every run in flight and queued, to its last
                # epoch, before the error surfaced (hunt 48a); the runs are stopped now, unfinished
                # (their records go nowhere: the study ends with this error), and the run named.
                # Killed before any shutdown: ``shutdown(wait=False)`` forgets the workers (the
                # interpreter's exit then joined them, to their last epoch).
                _kill_workers(ex)
                if handling is not None:
                    name, norm, seed = tasks[handling]
                    run = run_label({"optimizer": name, "norm": norm, "seed": seed})
                    note = f"optkern study: run {run}: raised by its result or its handling; the runs in flight stopped"
                    add_note = getattr(e, "add_note", None)  # (Python 3.11+; said on stderr before)
                    if add_note is not None:
                        add_note(note)
                    else:
                        print(note, file=sys.stderr, flush=True)
                raise
            except KeyboardInterrupt:
                # The workers had Ctrl-C too: the runs in flight return what they measured (a worker
                # still starting up takes it once it is idle, see ``_signals_blocked``). Forwarded
                # too, for a SIGINT that reached this process alone.
                try:
                    with _further_interrupts_ignored():
                        _collect_interrupted(ex, running, records, stop)
                finally:
                    # Every record is in: the workers have nothing left to give. Ended here, as a
                    # broken pool's are (_kill_workers): one that outlived the pool's terminate() (it
                    # ignores a second SIGTERM while it saves) hung the shutdown, waiting for work,
                    # where a worker killed by the same group SIGTERM while idle left the queue's lock
                    # held. (In a finally: whatever ends the wait, no worker outlives the study.)
                    _kill_workers(ex)
                return True
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM after the last run, while ``with`` joins the workers (a second one in
        # the branch above): the records are whole. It escaped here, and the study ended with
        # no report and exit status 130, where SIGTERM's is 143.
        return True
    return False
