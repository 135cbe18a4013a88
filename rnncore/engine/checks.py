"""Argument checks shared by every public entry point. Everything a user
can pass is checked before C sees it, and every error names the argument."""
import operator

import numpy as np

__all__ = ["check_int", "check_bool", "as_float32", "shape_str", "check_shape", "as_state",
           "make_rng"]


def check_int(name, value, minimum=None):
    """An integer argument (bool excluded): TypeError for other types,
    ValueError below `minimum`."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def as_float32(name, value):
    """`value` as a float32 ndarray.

    Real floating input of another precision (float16, float64, longdouble) is
    converted to float32; every other dtype (integers, bool, complex, object,
    strings) raises TypeError. The result may share memory with `value`.
    """
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{name} must be a float32 array, could not convert "
                        f"{type(value).__name__}: {exc}") from None
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} must be float32 (other real float types are converted), "
                        f"got {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def shape_str(shape):
    """A shape as Python writes it: (3, 4), (5,), ()."""
    return str(tuple(int(s) for s in shape))


def check_shape(name, arr, expected, what):
    """ValueError naming `name` unless arr.shape == expected."""
    if arr.shape != tuple(expected):
        raise ValueError(f"{name} must have shape {what} = {shape_str(expected)}, "
                         f"got {shape_str(arr.shape)}")


def as_state(name, value, expected, what):
    """An initial-state argument: float32, C-contiguous, of shape `expected`."""
    if isinstance(value, (tuple, list)):
        raise ValueError(f"{name} must be an array of shape {what} = {shape_str(expected)}, "
                         f"got a {type(value).__name__}")
    arr = as_float32(name, value)
    check_shape(name, arr, expected, what)
    return np.ascontiguousarray(arr)


def make_rng(seed, name="seed"):
    """A numpy Generator from an int >= 0, a Generator (used as is) or None
    (fresh entropy)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None:
        seed = check_int(name, seed, minimum=0)
    return np.random.default_rng(seed)
