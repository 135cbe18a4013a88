"""``rnncore bench``: forward-pass speed of rnncore against PyTorch, ONNX
Runtime and the NumPy reference on the same weights, with the machine's
measured limits; ``rnncore bench --train``: a training step (forward_train +
backward of stacked layers, as torch's forward + ``backward()``) against
PyTorch.

Each (backend, thread count) runs in its own subprocess (two thread pools in
one process distort 2-thread timings). For each case every backend builds
its model and runs a warm-up, then the timed calls are interleaved across the
backends, so that drift on a shared machine hits all of them alike; the
median (and the minimum) per backend is reported. The parent process measures the FP32 FMA peak
and the L2 / L3 / DRAM read bandwidths with rnncore's probes, and derives for
each case:

* GFLOP/s and % of the measured peak at that thread count;
* the roofline floor: the input-projection GEMM at peak, plus per step the
  larger of (recurrent FLOPs / peak) and (recurrent weight bytes / bandwidth
  of the cache level that holds them), and rnncore's % of that floor.

Training cases report GFLOP/s and % of peak (their floor is the FLOPs at
peak): the FLOPs of forward (input and recurrent GEMMs per layer) plus
backward (recurrent, dW_ih and dW_hh GEMMs per layer, and the input-gradient
GEMM of every layer but the first, whose input needs no gradient).

Backends that are not installed (torch, onnxruntime) are reported as missing.

``--dtype int8`` times rnncore's int8 copies (rnncore.quantize) instead,
side by side with rnncore's float32 layers, PyTorch's dynamic quantization
(torch.ao.quantization.quantize_dynamic: nn.LSTM and nn.GRU, and the *Cell
modules of steps) and ONNX Runtime's (onnxruntime.quantization.
quantize_dynamic, which turns an LSTM node into com.microsoft.
DynamicQuantizeLSTM and leaves GRU and RNN nodes in float: those cases are
reported as "-"). Ratios and floors are then rnncore-int8's: the floor
with one byte per weight and 4x the FMA peak (a VNNI instruction does 64
multiply-adds, an FMA 16; %peak is of that int8 peak).
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

from ..engine import runtime
from ..engine.config import config
from ..engine.layers import make_layer
from ..interop.gates import reorder_gates
from ..quantization import quantize
from . import tune
from .cases import (CELL, CELLS, FULL, QUICK, STEP_FULL, STEP_QUICK, TRAIN_FULL, TRAIN_QUICK,
                    case_name)

GATES = {name: c.gates for name, c in CELL.items()}
BACKENDS = ("rnncore", "torch", "onnxruntime", "reference", "rnncore-int8", "torch-int8",
            "ort-int8")
INT8_BACKENDS = ("rnncore-int8", "rnncore", "torch-int8", "ort-int8")  # --dtype int8
PAUSE_S = 0.05  # between two backends' turns: idle thread pools go to sleep
TRAIN_BACKENDS = ("rnncore", "torch", "reference")  # ONNX Runtime does not train
STEP_REPS = 200  # streaming cases: single steps timed per call (layer.step; torch's
                 # *Cell modules; ONNX Runtime on a T = 1 graph)


def flops(cell, T, N, H):
    """(input-projection FLOPs, recurrent FLOPs) of a forward pass, I = H."""
    per = 2.0 * T * N * H * GATES[cell] * H
    return per, per


def train_flops(cell, T, N, H, layers):
    """FLOPs of a training step of `layers` stacked layers, I = H: per layer 2
    forward GEMMs and 3 backward ones, plus dx for every layer but the first."""
    per = 2.0 * T * N * H * GATES[cell] * H
    return per * (5 * layers + layers - 1)


# ------------------------------------------------------------------ weights

def state_dict(cell, H, seed=0):
    """PyTorch-named weights of a one-layer cell, U(-1/sqrt(H), 1/sqrt(H))."""
    rng = np.random.default_rng(seed)
    G, k = GATES[cell], 1.0 / np.sqrt(H)
    shapes = {"weight_ih_l0": (G * H, H), "weight_hh_l0": (G * H, H),
              "bias_ih_l0": (G * H,), "bias_hh_l0": (G * H,)}
    return {name: rng.uniform(-k, k, shape).astype(np.float32) for name, shape in shapes.items()}


def onnx_model(cell, H, sd, with_state=False):
    """An ONNX graph of one unidirectional layer (opset 14) with these weights:
    X [T, N, H] -> Y [T, 1, N, H]; with_state, also the inputs initial_h (and
    initial_c for LSTM) [1, N, H] and the outputs Y_h (and Y_c), so that a
    stream of T = 1 calls carries its state (without an initial state ONNX
    Runtime can skip the first step's recurrent product). Gate blocks are
    reordered from PyTorch's (LSTM i,f,g,o -> ONNX i,o,f,c; GRU r,z,n -> z,r,h)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def reorder(a):
        return reorder_gates(a, CELL[cell].onnx_order, H)[None]

    W, R = reorder(sd["weight_ih_l0"]), reorder(sd["weight_hh_l0"])
    B = np.concatenate([reorder(sd["bias_ih_l0"]), reorder(sd["bias_hh_l0"])], axis=1)
    attrs = {"hidden_size": H}
    attrs.update(CELL[cell].onnx_options)
    inputs, outputs = ["X", "W", "R", "B"], ["Y"]
    graph_in = [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "N", H])]
    graph_out = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", 1, "N", H])]
    if with_state:
        states = ["h", "c"] if cell == "LSTM" else ["h"]
        inputs += [""] + [f"initial_{s}" for s in states]  # "": no sequence_lens
        outputs += [f"Y_{s}" for s in states]
        graph_in += [helper.make_tensor_value_info(f"initial_{s}", TensorProto.FLOAT, [1, "N", H])
                     for s in states]
        graph_out += [helper.make_tensor_value_info(f"Y_{s}", TensorProto.FLOAT, [1, "N", H])
                      for s in states]
    node = helper.make_node(cell, inputs, outputs, **attrs)
    graph = helper.make_graph(
        [node], f"rnncore_bench_{cell.lower()}", graph_in, graph_out,
        initializer=[numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R"),
                     numpy_helper.from_array(B, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


# ------------------------------------------------------------------ worker

def _train_runner(backend, cell, H, threads, layers, d_out):
    """A callable running one training step of `backend` on x: gradients
    cleared, forward with the values backward needs, backward of
    sum(out * d_out) into every parameter (not into x)."""
    if backend in ("rnncore", "reference"):
        runtime.set_num_threads(threads)
        layer = make_layer(CELL[cell], H, H, num_layers=layers, seed=0)

        def step(x):
            layer.zero_grad()
            out, _, tape = layer.forward_train(x)
            layer.backward(tape, d_out, input_grad=False)
        return step
    if backend == "torch":
        import torch
        torch.set_num_threads(threads)
        module = getattr(torch.nn, cell)(H, H, num_layers=layers)
        grad = torch.from_numpy(d_out)

        def step(x):
            for p in module.parameters():
                p.grad = None
            out, _ = module(torch.from_numpy(x))
            out.backward(grad)
        return step
    raise ValueError(f"backend {backend!r} cannot train")


def _ort_session(model, threads):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def _step_runner(backend, cell, H, threads):
    """A callable running STEP_REPS single time steps of `backend` on x
    [N, H], carrying the state from step to step."""
    sd = state_dict(cell, H)
    if backend in ("rnncore", "reference", "rnncore-int8"):
        runtime.set_num_threads(threads)
        layer = make_layer(CELL[cell], H, H)
        layer.load_state_dict(sd)
        if backend == "rnncore-int8":
            layer = quantize(layer)

        def steps(x):
            state = None
            for _ in range(STEP_REPS):
                _, state = layer.step(x, state)
        return steps
    if backend in ("torch", "torch-int8"):
        import torch
        torch.set_num_threads(threads)
        module = getattr(torch.nn, cell + "Cell")(H, H)
        module.load_state_dict({k[:-3]: torch.from_numpy(v) for k, v in sd.items()})  # no "_l0"
        if backend == "torch-int8":
            module = _torch_int8(module)

        def steps(x):
            xt, state = torch.from_numpy(x), None
            with torch.no_grad():
                for _ in range(STEP_REPS):
                    state = module(xt, state)
        return steps
    if backend in ("onnxruntime", "ort-int8"):
        model = onnx_model(cell, H, sd, with_state=True)
        if backend == "ort-int8":
            model = _ort_int8(model)
            if model is None:
                return None
        session = _ort_session(model, threads)
        names = ["initial_h", "initial_c"] if cell == "LSTM" else ["initial_h"]

        def steps(x):
            feeds = {"X": x[None], **{n: np.zeros((1,) + x.shape, np.float32) for n in names}}
            for _ in range(STEP_REPS):
                out = session.run(None, feeds)
                feeds.update(zip(names, out[1:]))
        return steps
    raise ValueError(f"unknown backend {backend!r}")


def step_floor_us(cell, N, H, threads, probe, machine, weight_bytes=4):
    """A step's floor: its FLOPs at peak or its weights (W_ih and W_hh, I = H,
    weight_bytes each) read from the cache level that holds a thread's
    share, whichever is longer."""
    f = 2.0 * N * GATES[cell] * H * 2 * H
    w_bytes = float(weight_bytes) * GATES[cell] * H * 2 * H
    if w_bytes / threads <= machine["l2_bytes"]:
        bw = probe["l2_gbps"]
    elif w_bytes <= machine["l3_bytes"]:
        bw = probe["l3_gbps"]
    else:
        bw = probe["dram_gbps"]
    return max(f / (probe["peak_gflops"] * 1e9), w_bytes / (bw * 1e9)) * 1e6


def _runner(backend, cell, H, threads):
    """A zero-argument callable running one forward pass of `backend` on x."""
    sd = state_dict(cell, H)
    if backend in ("rnncore", "reference", "rnncore-int8"):
        runtime.set_num_threads(threads)
        layer = make_layer(CELL[cell], H, H)
        layer.load_state_dict(sd)
        if backend == "rnncore-int8":
            layer = quantize(layer)
        return lambda x: layer(x)
    if backend in ("torch", "torch-int8"):
        import torch
        torch.set_num_threads(threads)
        module = getattr(torch.nn, cell)(H, H)
        module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
        if backend == "torch-int8":
            if cell == "RNN":  # torch's dynamic quantization has no quantized nn.RNN
                return None
            module = _torch_int8(module)

        def run(x):
            with torch.no_grad():
                return module(torch.from_numpy(x))
        return run
    if backend in ("onnxruntime", "ort-int8"):
        model = onnx_model(cell, H, sd)
        if backend == "ort-int8":
            model = _ort_int8(model)
            if model is None:
                return None
        session = _ort_session(model, threads)
        return lambda x: session.run(None, {"X": x})
    raise ValueError(f"unknown backend {backend!r}")


def _torch_int8(module):
    """PyTorch's dynamic quantization of a recurrent module (int8 weights,
    activations quantized per call)."""
    import torch
    kinds = {torch.nn.LSTM, torch.nn.GRU, torch.nn.LSTMCell, torch.nn.GRUCell, torch.nn.RNNCell}
    return torch.ao.quantization.quantize_dynamic(module, kinds, dtype=torch.qint8)


def _ort_int8(model_bytes):
    """ONNX Runtime's quantize_dynamic of a one-node graph (int8 weights), or
    None when it leaves the node in float (it quantizes LSTM only)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "f.onnx"), os.path.join(tmp, "q.onnx")
        with open(src, "wb") as f:
            f.write(model_bytes)
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
        model = onnx.load(dst)
    if not any(n.op_type.startswith("DynamicQuantize") for n in model.graph.node):
        return None
    return model.SerializeToString()


def worker(backend, threads):
    """Serve timing requests for one backend in this process, one JSON line
    each way: {"case": [cell, T, N, H, kind, layers]} builds the model (kind
    "forward" or "train") and runs the warm-up;
    {"time": true} times one call (ms), after an untimed call when calls are
    short (< 100 ms), so that this backend's weights are back in cache after
    the other backends' turns; {"quit": true} ends."""
    fn = x = None
    last_ms = 0.0
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("quit"):
            break
        if "case" in req:
            cell, T, N, H, kind, layers = req["case"]
            rng = np.random.default_rng(1)
            x = rng.standard_normal((T, N, H)).astype(np.float32)
            if kind == "step":
                x = x[0]
                fn = _step_runner(backend, cell, H, threads)
            elif kind == "train":
                d_out = rng.standard_normal((T, N, H)).astype(np.float32)
                fn = _train_runner(backend, cell, H, threads, layers, d_out)
            else:
                fn = _runner(backend, cell, H, threads)
            if fn is None:  # this backend has no such model (e.g. no int8 GRU)
                reply = {"ready": False}
            else:
                fn(x)  # warm-up
                reply = {"ready": True}
        else:
            if last_ms < 100:
                fn(x)
            t0 = time.perf_counter()
            fn(x)
            last_ms = (time.perf_counter() - t0) * 1e3
            reply = {"ms": last_ms}
        print(json.dumps(reply), flush=True)


# Workers start in the folder holding the rnncore this process imported:
# `python -m` and `-c` put the working directory first on sys.path, and from a
# source checkout (the README's command) they imported the unbuilt tree and
# timed the NumPy fallback.
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _available(backend):
    module = {"torch": "torch", "onnxruntime": "onnxruntime", "rnncore": "rnncore._core",
              "reference": "rnncore", "rnncore-int8": "rnncore._core", "torch-int8": "torch",
              "ort-int8": "onnxruntime.quantization"}[backend]
    code = f"import {module}" + ("\nimport onnx" if backend in ("onnxruntime", "ort-int8") else "")
    return subprocess.run([sys.executable, "-c", code], capture_output=True,
                          cwd=_PACKAGE_PARENT).returncode == 0


class _Worker:
    """A backend in its own process (two thread pools in one process distort
    multi-threaded timings), pinned to `threads` threads."""

    def __init__(self, backend, threads):
        # Idle OpenBLAS threads busy-wait for ~2^28 cycles by default: a
        # spinning reference worker halved the next backend's 2-thread speed.
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads), OPENBLAS_THREAD_TIMEOUT="4")
        # the rnncore worker must run the compiled kernels or fail, never
        # fall back to the reference unnoticed
        env["RNNCORE_BACKEND"] = "reference" if backend == "reference" else "c"
        self.backend = backend
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rnncore.tools.bench", "--worker", backend, "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            cwd=_PACKAGE_PARENT)

    def ask(self, request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.backend} worker failed:\n{self.proc.stderr.read()}")
        return json.loads(line)

    def close(self):
        try:
            self.ask({"quit": True})
        except (RuntimeError, OSError, ValueError):
            pass
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            pipe.close()
        self.proc.wait(timeout=60)


def time_cases(backends, threads, cases, repeat, budget_s, progress):
    """Median and minimum ms per (case, backend). Repeats are interleaved
    across backends (one call of each in turn, with a pause that lets idle
    OpenMP threads fall asleep), so that drift on a shared machine hits every
    backend alike; a backend stops early (after >= 3 calls) once its calls
    have used `budget_s`."""
    workers = [_Worker(b, threads) for b in backends]
    out = {}
    try:
        for case in cases:
            name = case_name(*case)
            progress(f"  {name}, {threads} thread(s)")
            ready = [w for w in workers if w.ask({"case": list(case)})["ready"]]
            times = {w.backend: [] for w in ready}
            for r in range(repeat):
                for w in ready:
                    spent = sum(times[w.backend]) / 1e3
                    if r >= 3 and spent > budget_s:
                        continue
                    time.sleep(PAUSE_S)
                    times[w.backend].append(w.ask({"time": True})["ms"])
            for b, ts in times.items():
                out[(name, b)] = {"ms": float(np.median(ts)), "ms_min": float(np.min(ts)),
                                  "repeats": len(ts)}
    finally:
        for w in workers:
            w.close()
    return out


# ------------------------------------------------------------------ machine

def _cache_bytes(level):
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for idx in sorted(os.listdir(base)):
            with open(f"{base}/{idx}/level") as f:
                if int(f.read()) != level:
                    continue
            with open(f"{base}/{idx}/type") as f:
                if f.read().strip() == "Instruction":
                    continue
            with open(f"{base}/{idx}/size") as f:
                text = f.read().strip()
            scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1], 1)
            return int(text.rstrip("KMG")) * scale
    except (OSError, ValueError):
        pass
    return {2: 1 << 20, 3: 32 << 20}[level]


def machine_line():
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    flags = ",".join(f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni")
                                     if f in have)
                    break
    except OSError:
        pass
    return {"cpu": model, "isa_flags": flags, "cores": os.cpu_count(),
            "l2_bytes": _cache_bytes(2), "l3_bytes": _cache_bytes(3)}


def probes(thread_counts, seconds=0.3):
    """Measured FMA peak and read bandwidths per thread count."""
    core = runtime.c_ops()
    if core is None:
        raise RuntimeError("the probes need the C extension")
    l2, l3 = _cache_bytes(2), _cache_bytes(3)
    out = {}
    for t in thread_counts:
        # half a cache per thread for L2; a quarter of the shared L3 (the
        # 4-16 MB of recurrent weights of the H = 512-1024 cases)
        sizes = {"l2": l2 // 2 * t, "l3": l3 // 4, "dram": max(8 * l3, 256 << 20)}
        bw = {}
        for level, nbytes in sizes.items():
            buf = np.ones(nbytes // 4, np.float32)
            bw[level] = max(core.probe_read_gbps(buf, t, seconds) for _ in range(3))
        # best of three: a shared machine can lose a core for a moment
        out[t] = {"peak_gflops": max(core.probe_peak_gflops(t, seconds) for _ in range(3)),
                  **{f"{k}_gbps": v for k, v in bw.items()}}
    return out


def floor_ms(cell, T, N, H, threads, probe, machine, weight_bytes=4):
    """The roofline floor of a case (see the module docstring; int8: one
    byte a weight, and run() passes probes whose peak is the int8 one)."""
    f_in, f_rec = flops(cell, T, N, H)
    peak = probe["peak_gflops"] * 1e9
    w_bytes = float(weight_bytes) * GATES[cell] * H * H
    per_thread = w_bytes / threads
    if per_thread <= machine["l2_bytes"]:
        bw = probe["l2_gbps"]
    elif w_bytes <= machine["l3_bytes"]:
        bw = probe["l3_gbps"]
    else:
        bw = probe["dram_gbps"]
    step = max(f_rec / T / peak, w_bytes / (bw * 1e9))
    return (f_in / peak + T * step) * 1e3


# ------------------------------------------------------------------ report

def run(cells, hidden, batch, steps, threads, backends, repeat, budget_s, progress=print,
        kind="forward", layers=1, probe_seconds=0.3, dtype="float32"):
    machine = machine_line()
    progress(f"machine: {machine['cpu']} | {machine['isa_flags']} | {machine['cores']} cores")
    cfg = config()
    progress(f"rnncore {cfg['version']}: backend {cfg['backend']}, cpu path {cfg['cpu_path']}, "
             f"openmp {'on' if cfg['openmp'] else 'off'}; numpy {np.__version__}")
    probe = probes(threads, probe_seconds)
    for t, p in probe.items():
        progress(f"probes, {t} thread(s): peak {p['peak_gflops']:.0f} GFLOP/s, read L2 "
                 f"{p['l2_gbps']:.0f} / L3 {p['l3_gbps']:.0f} / DRAM {p['dram_gbps']:.0f} GB/s")
    cases = [(c, steps, n, h, kind, layers) for c in cells for h in hidden for n in batch]
    have = {b: _available(b) for b in backends}
    results = {}
    for t in threads:
        timed = time_cases([b for b in backends if have[b]], t, cases, repeat, budget_s, progress)
        for (name, b), r in timed.items():
            results[(name, t, b)] = r
    ours_b = "rnncore-int8" if dtype == "int8" else "rnncore"
    wb = 1 if dtype == "int8" else 4
    if dtype == "int8":  # VNNI: 64 multiply-adds a 512-bit instruction, an FMA 16
        probe = {t: dict(p, peak_gflops=4 * p["peak_gflops"]) for t, p in probe.items()}
    rows = []
    for t in threads:
        for cell, T, N, H, _, _ in cases:
            name = case_name(cell, T, N, H, kind, layers)
            ms = {b: results[(name, t, b)]["ms"] for b in backends if (name, t, b) in results}
            row = {"case": name, "kind": kind, "cell": cell, "layers": layers,
                   "T": T, "N": N, "H": H, "threads": t, "ms": ms,
                   "ms_min": {b: results[(name, t, b)]["ms_min"] for b in ms},
                   "repeats": {b: results[(name, t, b)]["repeats"] for b in ms}}
            if kind == "step":  # per step, in microseconds
                row["us"] = {b: v * 1e3 / STEP_REPS for b, v in ms.items()}
            if ours_b in ms and kind == "step":
                ours = row["us"][ours_b]
                row["gflops"] = 2.0 * N * GATES[cell] * H * 2 * H / ours / 1e3
                row["pct_peak"] = 100 * row["gflops"] / probe[t]["peak_gflops"]
                row["floor_us"] = step_floor_us(cell, N, H, t, probe[t], machine, wb)
                row["pct_floor"] = 100 * row["floor_us"] / ours
                row["speedup"] = {b: ms[b] / ms[ours_b] for b in ms if b != ours_b}
            elif ours_b in ms:
                train = kind == "train"
                total = train_flops(cell, T, N, H, layers) if train else sum(flops(cell, T, N, H))
                ours = ms[ours_b]
                row["gflops"] = total / ours / 1e6
                row["pct_peak"] = 100 * row["gflops"] / probe[t]["peak_gflops"]
                if train:
                    row["floor_ms"] = total / (probe[t]["peak_gflops"] * 1e9) * 1e3
                else:
                    row["floor_ms"] = floor_ms(cell, T, N, H, t, probe[t], machine, wb)
                row["pct_floor"] = 100 * row["floor_ms"] / ours
                row["speedup"] = {b: ms[b] / ours for b in ms if b != ours_b}
            rows.append(row)
    return {"date": time.strftime("%Y-%m-%d"), "machine": machine, "config": cfg,
            "numpy": np.__version__, "probes": probe, "backends": have, "rows": rows,
            "dtype": dtype, "primary": ours_b,
            "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:])}


def format_table(report):
    primary = report.get("primary", "rnncore")
    backends = [primary] + [b for b in BACKENDS if report["backends"].get(b) and b != primary]
    short = {"rnncore": "rnncore", "torch": "torch", "onnxruntime": "ort", "reference": "ref",
             "rnncore-int8": "int8", "torch-int8": "torch-int8", "ort-int8": "ort-int8"}
    step = any(r["kind"] == "step" for r in report["rows"])
    unit, key, floor_key = ("us", "us", "floor_us") if step else ("ms", "ms", "floor_ms")
    head = (["case", "thr"] + [f"{short[b]} {unit}" for b in backends]
            + [f"x{short[b]}" for b in backends if b != primary]
            + ["GFLOP/s", "%peak", f"floor {unit}", "%floor"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in report["rows"]:
        cells = [r["case"], str(r["threads"])]
        cells += [f"{r[key][b]:.2f}" if b in r[key] else "-" for b in backends]
        sp = r.get("speedup", {})
        cells += [f"{sp[b]:.2f}" if b in sp else "-" for b in backends if b != primary]
        if "gflops" in r:
            cells += [f"{r['gflops']:.1f}", f"{r['pct_peak']:.0f}", f"{r[floor_key]:.2f}",
                      f"{r['pct_floor']:.0f}"]
        else:
            cells += ["-"] * 4
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_scaling(report):
    """Speed-up of each backend from the lowest to the highest thread count."""
    counts = sorted({r["threads"] for r in report["rows"]})
    if len(counts) < 2:
        return ""
    lo, hi = counts[0], counts[-1]
    by = {(r["case"], r["threads"]): r for r in report["rows"]}
    backends = [b for b in BACKENDS if report["backends"].get(b)]
    lines = ["| case | " + " | ".join(f"{b} x{lo}->{hi}" for b in backends) + " |",
             "|" + "---|" * (len(backends) + 1)]
    for r in report["rows"]:
        if r["threads"] != lo or (r["case"], hi) not in by:
            continue
        other = by[(r["case"], hi)]
        cells = [f"{r['ms'][b] / other['ms'][b]:.2f}" if b in r["ms"] and b in other["ms"] else "-"
                 for b in backends]
        lines.append(f"| {r['case']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def add_arguments(parser):
    parser.add_argument("--quick", action="store_true",
                        help="small subset: H=256, N in {1, 16}, 1 thread (under a minute)")
    parser.add_argument("--train", action="store_true",
                        help="time training steps (forward_train + backward) instead: "
                             "2 layers, T=35, N=64, H in {256, 512} (--quick: H=256, 1 thread)")
    parser.add_argument("--layers", type=int, default=2, help="stacked layers with --train (default 2)")
    parser.add_argument("--tune", action="store_true",
                        help="sweep the GEMM blocking on this machine and print the best against "
                             "the derived choice (rnncore.tools.tune; first --hidden/--batch/"
                             "--steps/--threads values, default 512/64/20/1)")
    parser.add_argument("--step", action="store_true",
                        help="time single streaming steps at N=1 instead (layer.step against "
                             "torch's *Cell and ONNX Runtime on T=1), H in {256, 512, 1024}, "
                             "1 and 2 threads (--quick: H=512, 1 thread)")
    parser.add_argument("--cells", nargs="+", choices=CELLS, help="cells (default all)")
    parser.add_argument("--hidden", nargs="+", type=int, help="I = H values (default 256 512 1024)")
    parser.add_argument("--batch", nargs="+", type=int, help="batch sizes N (default 1 16 64)")
    parser.add_argument("--steps", type=int, help="sequence length T (default 100)")
    parser.add_argument("--threads", nargs="+", type=int, help="thread counts (default 1 2)")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS,
                        help="default: all (with --train: rnncore torch)")
    parser.add_argument("--repeat", type=int, default=7, help="timed repeats per case (default 7)")
    parser.add_argument("--budget", type=float, default=5.0,
                        help="seconds per case after which fewer (>= 3) repeats suffice")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    tune.add_arguments(parser)
    parser.add_argument("--dtype", choices=["float32", "int8"], default="float32",
                        help="int8: rnncore's int8 copies against rnncore float32 and the "
                             "int8 paths of PyTorch and ONNX Runtime (forward and --step)")
    parser.add_argument("--probe-seconds", type=float, default=0.3,
                        help="duration of each machine probe, best of 3 (default 0.3)")


def main_from_args(args):
    if runtime.c_ops() is None:
        raise SystemExit("rnncore bench: needs the C extension, which failed to import "
                         f"({runtime.CORE_ERROR}); rebuild with pip install .")
    if args.tune:
        if args.train or args.step or args.dtype != "float32":
            raise SystemExit("rnncore bench: --tune excludes --train, --step and --dtype int8")
        return tune.main_from_args(args)
    if args.train and args.step:
        raise SystemExit("rnncore bench: --train and --step exclude each other")
    if args.dtype == "int8" and args.train:
        raise SystemExit("rnncore bench: --dtype int8 is inference only (not with --train)")
    if args.step:
        grid = dict(STEP_QUICK if args.quick else STEP_FULL)
        backends = args.backends or list(INT8_BACKENDS if args.dtype == "int8" else BACKENDS[:4])
    elif args.train:
        grid = dict(TRAIN_QUICK if args.quick else TRAIN_FULL)
        backends = args.backends or ["rnncore", "torch"]
        if not set(backends) <= set(TRAIN_BACKENDS):
            raise SystemExit(f"rnncore bench --train: backends must be among {TRAIN_BACKENDS}")
    else:
        grid = dict(QUICK if args.quick else FULL)
        backends = args.backends or list(INT8_BACKENDS if args.dtype == "int8" else BACKENDS[:4])
    for key in ("cells", "hidden", "batch", "steps", "threads"):
        if getattr(args, key) is not None:
            grid[key] = getattr(args, key)
    for key in ("hidden", "batch", "threads"):
        if any(v < 1 for v in grid[key]):
            raise SystemExit(f"rnncore bench: --{key} values must be >= 1")
    if not 0 < args.probe_seconds <= 60:
        raise SystemExit("rnncore bench: --probe-seconds must be in (0, 60]")
    if grid["steps"] < 1 or args.repeat < 1 or args.layers < 1:
        raise SystemExit("rnncore bench: --steps, --repeat and --layers must be >= 1")
    report = run(grid["cells"], grid["hidden"], grid["batch"], grid["steps"], grid["threads"],
                 backends, args.repeat, args.budget,
                 progress=lambda s: print(s, file=sys.stderr, flush=True),
                 kind="train" if args.train else "step" if args.step else "forward",
                 layers=args.layers if args.train else 1, probe_seconds=args.probe_seconds,
                 dtype=args.dtype)
    print(format_table(report))
    scaling = format_scaling(report)
    if scaling:
        print("\nThread scaling (time at the lowest / time at the highest thread count):\n")
        print(scaling)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


def _worker_main(argv):
    p = argparse.ArgumentParser(prog="python -m rnncore.tools.bench")
    p.add_argument("--worker", choices=BACKENDS, required=True)
    p.add_argument("--threads", type=int, required=True)
    a = p.parse_args(argv)
    worker(a.worker, a.threads)


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
