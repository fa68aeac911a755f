"""The collectives of a :class:`~optkern.distributed.communicator.Communicator` that move no
arrays: ``barrier`` and the pickled Python objects (small: shapes, state dicts), mpi4py's own
calls, compared between the ranks by nothing (every rank calls them, alike). A base of
``Communicator``; its array collectives are in :mod:`.communicator`."""

from __future__ import annotations

from .transport import Transport


class ObjectCollectives(Transport):
    """``barrier``, ``allgather_object``, ``gather_object`` and ``bcast_object`` of a Communicator."""

    def barrier(self) -> None:
        """Wait until every rank has called it (MPI's ``Barrier``). RuntimeError after
        ``MPI.Finalize()``."""
        self._live("barrier")
        self.mpi.Barrier()

    def allgather_object(self, obj) -> list:
        """Every rank's ``obj`` (any picklable Python object), in rank order, on every rank:
        mpi4py's pickled ``allgather``. The ``*_object`` collectives compare nothing between the
        ranks first (unlike the array collectives): every rank must call them, alike. RuntimeError
        after ``MPI.Finalize()``."""
        self._live("allgather_object")
        return self.mpi.allgather(obj)

    def gather_object(self, obj, root: int = 0):
        """Every rank's ``obj`` as a list in rank order on rank ``root``, None on the others
        (mpi4py's pickled ``gather``). ``root``: an integer in [0, size), the same on every rank
        (not compared between the ranks); TypeError / ValueError naming ``root`` where it is no such
        integer, before anything is sent."""
        self._live("gather_object")
        return self.mpi.gather(obj, root=self._root(root))

    def bcast_object(self, obj, root: int = 0):
        """Rank ``root``'s ``obj`` (pickled; the other ranks' ``obj`` is ignored), returned on every
        rank (mpi4py's ``bcast``). ``root`` as in :meth:`gather_object`."""
        self._live("bcast_object")
        return self.mpi.bcast(obj, root=self._root(root))
