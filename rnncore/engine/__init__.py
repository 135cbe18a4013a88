"""The engine: the cell table, argument checks, the Ops (the reference and
the C kernels), the runtime that picks one, the stacking loop, the layers
and the losses. It imports nothing of the tasks, interop, files or tools."""
