"""``COps``: the primitives of rnncore.engine.ops on the C kernels, and the
only module that imports the extension ``rnncore._core``.

Sequences stay float32 rows in the caller's order (``[T*N, F]``; the kernels
read batch-first rows themselves), so entering and leaving the engine
reshapes without copying. Padded batches arrive sorted by decreasing length
(``sorts_lengths``): the kernels compute only the rows still running at each
step, forward in time, so a reverse direction runs forward over each
sequence reversed within its own length (rnncore.h, "Variable lengths").
"""
import numpy as np

from .. import _core
from ..reference import reverse_within
from . import buffers
from .ops import Ops

__all__ = ["COps"]

_core.init()  # CPU detection and kernel choice, once (RNNCORE_DISABLE_ISA)


class _Tape:
    """What one layer-direction's forward kept for its backward: the tape
    buffer (None for RNN cells) and the rows the kernel read (x) and wrote
    (y, from column col)."""
    __slots__ = ("buf", "x", "y", "col")

    def __init__(self, buf, x, y, col):
        self.buf, self.x, self.y, self.col = buf, x, y, col


def _sizes(cell, p):
    """(H, proj): the hidden units and the LSTM projection's R (0 for none)."""
    w_hr = p.get("w_hr")
    return p["w_ih"].shape[0] // cell.gates, 0 if w_hr is None else w_hr.shape[0]


class COps(Ops):
    name = "c"
    sorts_lengths = True

    # ------------------------------------------------------------ the machine

    @staticmethod
    def code(cell):
        return _core.CELL_ENUM[cell.c_enum]

    isa = staticmethod(_core.isa)
    compiled_isas = staticmethod(_core.compiled_isas)
    isa_available = staticmethod(_core.isa_available)
    set_isa = staticmethod(_core.set_isa)
    blocking = staticmethod(_core.blocking)          # caches, tile, blocks, and why
    set_blocking = staticmethod(_core.set_blocking)  # for sweeps and tests
    has_openmp = staticmethod(_core.has_openmp)
    default_threads = staticmethod(_core.default_threads)
    version = _core.VERSION

    @staticmethod
    def probe_peak_gflops(n_threads, seconds):
        return _core.probe_peak_gflops(n_threads=n_threads, seconds=seconds)

    @staticmethod
    def probe_read_gbps(buf, n_threads, seconds):
        return _core.probe_read_gbps(buf, n_threads=n_threads, seconds=seconds)

    def pack(self, cell, H, w):
        """The kernels' packed form of a [G*H, K] weight (rnc_pack_weights),
        read-only."""
        floats = _core.packed_floats(self.code(cell), H, w.shape[1])
        if floats == 0:
            raise MemoryError(f"rnncore: packed weights of shape {w.shape} overflow")
        packed = buffers.aligned_empty(floats, np.float32)
        _core.pack_weights(self.code(cell), H, w=w, packed=packed)
        packed.flags.writeable = False
        return packed

    # ------------------------------------------------------------ sequences

    def enter(self, a, batch_first):
        return a.reshape(a.shape[0] * a.shape[1], a.shape[2]), batch_first

    def leave(self, a, T, N, batch_first):
        return a.reshape((N, T, -1) if batch_first else (T, N, -1))

    def new_layer_output(self, T, N, F):
        return buffers.aligned_empty((T * N, F))

    def new_input_grad(self, inp, lengths):
        # padded batches add up both directions' reversed parts; otherwise the
        # first direction writes and the second adds (dx_accumulate)
        return np.zeros_like(inp) if lengths is not None else np.empty_like(inp)

    # ------------------------------------------------------------ layers

    def layer_forward(self, cell, inp, state0, p, *, T, N, batch_first, reverse, lengths, y, col,
                      state_n, train, pool, n_threads):
        code, I, R = self.code(cell), inp.shape[1], p["w_hh"].shape[1]
        H, proj = _sizes(cell, p)
        floats = _core.fwd_workspace_floats(code, T, N, I, H, n_threads=n_threads, proj=proj)
        ws = buffers.workspace(floats, f"workspace for T={T}, N={N}, H={H}")
        tape_floats = _core.tape_floats(code, T, N, I, H) if train else 0
        buf = buffers.take(pool, tape_floats) if tape_floats else None
        x, out, out_col = inp, y, col
        flipped = lengths is not None and reverse
        if lengths is not None:  # forward in time over its own buffer
            if flipped:
                x = reverse_within(inp.reshape(T, N, I), lengths).reshape(T * N, I)
            out, out_col = buffers.aligned_empty((T * N, R)), 0
            reverse = False
        _core.forward(code, T, N, I, H, x=x, w_ih_p=p["w_ih_p"], w_hh_p=p["w_hh_p"],
                      b_ih=p["b_ih"], b_hh=p["b_hh"], state0=state0, state_n=state_n,
                      y=out, y_col=out_col, ws=ws, n_threads=n_threads,
                      batch_first=batch_first, reverse=reverse, tape=buf, lengths=lengths,
                      peephole=p["peephole"], input_forget=p["input_forget"], proj=proj,
                      w_hr_p=p.get("w_hr_p"))
        if lengths is not None:
            own = out.reshape(T, N, R)
            y.reshape(T, N, -1)[..., col:col + R] = reverse_within(own, lengths) if flipped else own
        return _Tape(buf, x, out, out_col) if train else None

    def layer_backward(self, cell, inp, y, tape, state0, p, g, *, T, N, batch_first, reverse,
                       lengths, dy, col, dstate_n, dinp, accumulate, dstate0, n_threads):
        code, I, R = self.code(cell), inp.shape[1], p["w_hh"].shape[1]
        H, proj = _sizes(cell, p)
        floats = _core.bwd_workspace_floats(code, T, N, I, H, n_threads=n_threads, proj=proj)
        ws = buffers.workspace(floats, f"backward workspace for T={T}, N={N}, H={H}")
        dx = dinp
        flipped = lengths is not None and reverse
        if lengths is not None:  # this direction alone, in its own (forward) time order
            dy = np.ascontiguousarray(dy.reshape(T, N, -1)[..., col:col + R])
            if flipped:
                dy = reverse_within(dy, lengths)
            dy = dy.reshape(T * N, R)
            dx = buffers.aligned_empty((T * N, I)) if dinp is not None else None
            accumulate, reverse = False, False
        _core.backward(code, T, N, I, H, x=tape.x, w_ih=p["w_ih"], w_hh=p["w_hh"], y=tape.y,
                       y_col=tape.col, tape=tape.buf, dy=dy, state0=state0, dstate_n=dstate_n,
                       dx=dx, dx_accumulate=accumulate, dstate0=dstate0, dw_ih=g["w_ih"],
                       dw_hh=g["w_hh"], db_ih=g["b_ih"], db_hh=g["b_hh"],
                       dpeephole=g["peephole"], ws=ws, n_threads=n_threads,
                       batch_first=batch_first, reverse=reverse, lengths=lengths,
                       peephole=p["peephole"], input_forget=p["input_forget"], proj=proj,
                       w_hr=p.get("w_hr"), dw_hr=g.get("w_hr"))
        if lengths is not None and dinp is not None:
            dx = dx.reshape(T, N, I)
            dinp.reshape(T, N, I)[...] += reverse_within(dx, lengths) if flipped else dx

    def release(self, tapes, pool, limit):
        buffers.give_back([t.buf for t in tapes if t is not None], pool, limit)

    def step_plan(self, cell, N, I, H, layers, n_threads):
        return _core.StepPlan(self.code(cell), N, I, H, layers=layers, n_threads=n_threads)

    # ------------------------------------------------------------ int8 inference

    qisa = staticmethod(_core.qisa)
    qisa_candidates = staticmethod(_core.qisa_candidates)
    set_qisa = staticmethod(_core.set_qisa)
    qact_max = staticmethod(_core.qisa_act_max)

    def qpack(self, wq, sw, G, H):
        """wq [G*H, K] int8 with row scales sw [G*H] packed for the int8
        kernels (rnc_qpack_weights), read-only."""
        nbytes = _core.qpacked_bytes(G, H, wq.shape[1])
        if nbytes == 0:
            raise ValueError(f"rnncore: int8 weights of shape {wq.shape} are out of range "
                             "(at most 65535 inputs)")
        packed = buffers.aligned_empty(nbytes, np.uint8)
        _core.qpack_weights(G, H, wq=wq, scale=sw, packed=packed)
        packed.flags.writeable = False
        return packed

    @staticmethod
    def qunpack(packed, G, H, K):
        """(wq [G*H, K] int8, sw [G*H] float32) back from qpack's layout
        (csrc/src/qkernels.h: per gate, groups of 8 panels [Kq][w][16][4],
        the last group w = Pg - 8b wide, Pg = Hp/16; then column sums
        [G*Hp], scales [G*Hp]; Hp = H rounded up to 32, Kq = ceil(K / 4))."""
        Hp, Kq = -(-H // 32) * 32, -(-K // 4)
        Pg, n = Hp // 16, G * Hp * Kq * 4
        gates = packed[:n].view(np.int8).reshape(G, Pg * Kq * 64)
        wq = np.empty((G, Hp, Kq * 4), np.int8)
        for b0 in range(0, Pg, 8):
            w = min(8, Pg - b0)
            group = gates[:, b0 * Kq * 64:(b0 + w) * Kq * 64].reshape(G, Kq, w, 16, 4)
            wq[:, b0 * 16:(b0 + w) * 16] = group.transpose(0, 2, 3, 1, 4).reshape(G, w * 16, Kq * 4)
        wq = wq[:, :H, :K]
        sw = packed[n + 4 * G * Hp:n + 8 * G * Hp].view(np.float32).reshape(G, Hp)[:, :H]
        return np.ascontiguousarray(wq.reshape(G * H, K)), sw.reshape(G * H).copy()

    def qlayer_forward(self, cell, inp, state0, p, *, T, N, batch_first, reverse, lengths, y,
                       col, state_n, n_threads, **_):
        code, I, R = self.code(cell), inp.shape[1], p["w_hh"].shape[1]
        H, proj = p["w_ih"].shape[0] // cell.gates, 0 if p.get("w_hr") is None else p["w_hr"].shape[0]
        nbytes = _core.qfwd_workspace_bytes(code, T, N, I, H, n_threads=n_threads, proj=proj)
        ws = buffers.workspace((nbytes + 3) // 4, f"int8 workspace for T={T}, N={N}, H={H}")
        x, out, out_col = inp, y, col
        flipped = lengths is not None and reverse
        if lengths is not None:  # forward in time over its own buffer, as layer_forward
            if flipped:
                x = reverse_within(inp.reshape(T, N, I), lengths).reshape(T * N, I)
            out, out_col = buffers.aligned_empty((T * N, R)), 0
            reverse = False
        _core.qforward(code, T, N, I, H, x=x, w_ih_q=p["w_ih"].packed, w_hh_q=p["w_hh"].packed,
                       b_ih=p["b_ih"], b_hh=p["b_hh"], state0=state0, state_n=state_n,
                       y=out, y_col=out_col, ws=ws.view(np.uint8), n_threads=n_threads,
                       batch_first=batch_first, reverse=reverse, lengths=lengths,
                       peephole=p["peephole"], input_forget=p["input_forget"], proj=proj,
                       w_hr_q=None if p.get("w_hr") is None else p["w_hr"].packed)
        if lengths is not None:
            own = out.reshape(T, N, R)
            y.reshape(T, N, -1)[..., col:col + R] = reverse_within(own, lengths) if flipped else own

    def qstep_plan(self, cell, N, I, H, layers, n_threads):
        if any(p["w_ih"].packed is None for p in layers):
            return None
        layers = [dict(p, w_ih_q=p["w_ih"].packed, w_hh_q=p["w_hh"].packed) for p in layers]
        return _core.QStepPlan(self.code(cell), N, I, H, layers=layers, n_threads=n_threads)

    def qlinear(self, x, w, bias, n_threads):
        if w.packed is None or x.strides[1] != 4 or x.strides[0] % 4:
            return super().qlinear(x, w, bias, n_threads)
        nbytes = _core.qlinear_workspace_bytes(x.shape[0], x.shape[1], n_threads=n_threads)
        ws = buffers.workspace((nbytes + 3) // 4, "int8 linear")
        y = buffers.aligned_empty((x.shape[0], w.shape[0]))
        _core.qlinear(x, w.packed, n_out=w.shape[0], bias=bias, y=y, ws=ws.view(np.uint8),
                      n_threads=n_threads)
        return y

    # ------------------------------------------------------------ output layer

    def matmul(self, a, b, out, accumulate, n_threads):
        """On rnc_gemm and its OpenMP threads. Why not NumPy's BLAS: its
        OpenBLAS threads keep spinning after a call and slowed the OpenMP
        kernels that follow (a GRU language-model step took 901 ms, 744 ms
        with OPENBLAS_NUM_THREADS=1); one thread pool avoids that. The GEMMs
        alone run at about the same speed as OpenBLAS's for a 10k-word
        decoder (37-58 GFLOP/s on 1 thread, Intel Xeon 2.0 GHz)."""
        if a.size == 0 or b.size == 0:
            return super().matmul(a, b, out, accumulate, n_threads)
        scratch = buffers.workspace(_core.gemm_workspace_floats(n_threads), "gemm")
        _core.gemm(a, b, c=out, accumulate=accumulate, scratch=scratch, n_threads=n_threads)
        return out

    def linear(self, x, w, w_p, bias, n_threads, out=None):
        """On rnc_linear: the weights are read from their packed panels
        instead of being packed by every product (rnc_gemm packs B)."""
        if w_p is None or x.strides[1] != 4 or x.strides[0] % 4:
            return super().linear(x, w, w_p, bias, n_threads, out)
        K, n_out = x.shape[1], w.shape[0]
        ws = buffers.workspace(_core.linear_workspace_floats(K, n_threads=n_threads), "linear")
        y = buffers.aligned_empty((x.shape[0], n_out)) if out is None else out
        _core.linear(x, w_p, n_out=n_out, bias=bias, y=y, ws=ws, n_threads=n_threads)
        return y

    def scatter_add_rows(self, dst, index, src, n_threads):
        """On rnc_scatter_add_rows: the sums of np.add.at, bit for bit, in a
        C loop: 2240 rows of 512 into 10k, 12.8 -> 1.1 ms (np.add.at's
        per-element loop was 1 % of a 10k-word LM training step; Zen 4, 1
        thread)."""
        _core.scatter_add_rows(index, np.ascontiguousarray(src), dst, n_threads=n_threads)
        return dst

    def softmax(self, x2, out, log, n_threads):
        """On rnc_softmax: one pass over memory per row (max, sum of exp and
        the result from cache), in place when out is x2."""
        _core.softmax(x2, out, log=log, n_threads=n_threads)
        return out

    def softmax_xent(self, z2, t2, scale, grad, in_place, n_threads):
        losses = np.empty(z2.shape[0], np.float32)
        dz = (z2 if in_place else np.empty_like(z2)) if grad else None
        _core.softmax_xent(z2, t2, loss=losses, dz=dz, scale=scale, n_threads=n_threads)
        return losses, dz
