"""The one table of cell kinds: everything the package needs to know about a
cell, written once. Layers, the C bridge, converters, model files, language
models, benchmarks and tests read it instead of keeping their own lists.

A cell is named by its ``mode`` (PyTorch's ``RNNBase.mode`` spelling, plus
``GRU_RB`` for the reset-before GRU); ``mode.lower()`` is the same name where
users type it (``LanguageModel(vocab, "gru")``, ``rnncore train --cell
rnn_tanh``). Variants of a cell that keep its kernels (LSTM peepholes, the
coupled input-forget gate) are layer options, listed in ``VARIANTS``.

Gate orders: PyTorch's order is the library's (LSTM i, f, g, o; GRU r, z, n).
``onnx_order[k]`` is the PyTorch gate block at ONNX's position k (LSTM
i, o, f, c; GRU z, r, h), ``keras_order[k]`` the one at Keras's position k
(LSTM i, f, c, o; GRU z, r, h).
"""
from dataclasses import dataclass

__all__ = ["Cell", "CELLS", "VARIANTS", "cell", "by_name"]


@dataclass(frozen=True)
class Cell:
    mode: str                 # layer.mode, reference.layer_forward's mode
    gates: int                # G: weight rows are G*H
    c_enum: str               # the rnc_cell enumerator (rnncore.h)
    layer: str                # the rnncore layer class: "RNN", "LSTM" or "GRU"
    layer_options: tuple      # its constructor arguments that select this cell
    tape_slots: tuple         # per step, what forward keeps for backward (reference)
    torch: str                # torch.nn class, or None (no PyTorch equivalent)
    keras: str                # Keras layer class
    keras_options: tuple
    keras_order: tuple
    onnx: str                 # ONNX operator
    onnx_options: tuple       # its attributes that select this cell
    onnx_order: tuple

    @property
    def name(self):
        """The lower-case name users type."""
        return self.mode.lower()

    @property
    def has_cell_state(self):
        """True for LSTM: its state is a pair (h, c)."""
        return self.mode == "LSTM"


CELLS = {c.mode: c for c in (
    Cell("RNN_TANH", 1, "RNC_CELL_RNN_TANH", "RNN", (("nonlinearity", "tanh"),), ("h",),
         "RNN", "SimpleRNN", (("activation", "tanh"),), (0,), "RNN", (), (0,)),
    Cell("RNN_RELU", 1, "RNC_CELL_RNN_RELU", "RNN", (("nonlinearity", "relu"),), ("h",),
         "RNN", "SimpleRNN", (("activation", "relu"),), (0,), "RNN",
         (("activations", ("Relu",)),), (0,)),
    Cell("LSTM", 4, "RNC_CELL_LSTM", "LSTM", (), ("i", "f", "g", "o", "c"),
         "LSTM", "LSTM", (), (0, 1, 2, 3), "LSTM", (), (0, 3, 1, 2)),
    Cell("GRU", 3, "RNC_CELL_GRU", "GRU", (("reset_after", True),), ("r", "z", "n", "hn"),
         "GRU", "GRU", (("reset_after", True),), (1, 0, 2), "GRU",
         (("linear_before_reset", 1),), (1, 0, 2)),
    Cell("GRU_RB", 3, "RNC_CELL_GRU_RB", "GRU", (("reset_after", False),), ("r", "z", "n", "rh"),
         None, "GRU", (("reset_after", False),), (1, 0, 2), "GRU",
         (("linear_before_reset", 0),), (1, 0, 2)),
)}

# named variants: (mode, extra layer options); tests and benchmarks sweep these
VARIANTS = {
    **{mode: (mode, ()) for mode in CELLS},
    "LSTM_PEEPHOLE": ("LSTM", (("peephole", True),)),
    "LSTM_CIFG": ("LSTM", (("input_forget", True),)),
    "LSTM_PEEPHOLE_CIFG": ("LSTM", (("peephole", True), ("input_forget", True))),
}


def cell(mode):
    """The Cell of `mode` ('LSTM', 'GRU', 'GRU_RB', 'RNN_TANH', 'RNN_RELU')."""
    try:
        return CELLS[mode]
    except KeyError:
        raise ValueError(f"mode must be one of {tuple(CELLS)}, got {mode!r}") from None


def by_name(name, argument="cell"):
    """The Cell of a lower-case name ('lstm', 'gru', 'gru_rb', 'rnn_tanh',
    'rnn_relu'); ValueError naming `argument` otherwise."""
    for c in CELLS.values():
        if c.name == name:
            return c
    raise ValueError(f"{argument} must be one of {sorted(c.name for c in CELLS.values())}, "
                     f"got {name!r}")

