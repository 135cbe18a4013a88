"""Padded batches for Ops that need them sorted (the C kernels): the sort of
one call, applied to every array entering the stacking loop and undone on
every array leaving it.

``layer(x, hx, lengths=...)`` gives what PyTorch gives for
pack_padded_sequence -> layer -> pad_packed_sequence, without packing
(rnncore.reference states the meaning). The kernels want the batch
time-major with lengths non-increasing; ``SortedBatch`` gathers x, the
states, the dropout masks and the gradients into that order once per call
and scatters the results back.
"""
import numpy as np

__all__ = ["SortedBatch"]


class SortedBatch:
    """The sort of one call: ``order`` (sequences by decreasing length,
    stable), the sorted ``lengths``, and the gathers between the caller's
    layout and the kernels' (time-major, sorted)."""

    def __init__(self, lengths, T, batch_first):
        self.order = np.argsort(-lengths, kind="stable")
        self.lengths = np.ascontiguousarray(lengths[self.order], dtype=np.int64)
        self.batch_first = batch_first
        self.T, self.N = T, lengths.size
        self.real = np.arange(T)[:, None] < self.lengths[None, :]  # [T, N]: not padding

    def to_sorted(self, a):
        """[T, N, F] (or [N, T, F] if batch_first) -> sorted time-major, contiguous."""
        a = a.transpose(1, 0, 2) if self.batch_first else a
        return np.ascontiguousarray(a[:, self.order])

    def from_sorted(self, a):
        """The inverse of to_sorted."""
        out = np.empty_like(a)
        out[:, self.order] = a
        return np.ascontiguousarray(out.transpose(1, 0, 2)) if self.batch_first else out

    def states_to_sorted(self, s):
        return None if s is None else np.ascontiguousarray(s[:, self.order])

    def states_from_sorted(self, s):
        if s is None:
            return None
        out = np.empty_like(s)
        out[:, self.order] = s
        return out
