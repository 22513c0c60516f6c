"""Elementwise operations with one meaning on ``[B]`` float64 tensors (a population: meta-training) and on Python
floats (one run: the scheduler), so that the feature statistics (``features._step``) and the controller's rule
(``controller._rule``) are each written once and run on either."""

from __future__ import annotations

import math
import struct

import torch

__all__ = ["ScalarOps", "TensorOps"]


class TensorOps:
    """On ``[B]`` float64 tensors."""

    where = staticmethod(torch.where)
    log, log10, sqrt, abs, exp = (
        staticmethod(torch.log),
        staticmethod(torch.log10),
        staticmethod(torch.sqrt),
        staticmethod(torch.abs),
        staticmethod(torch.exp),
    )
    minimum, maximum = staticmethod(torch.minimum), staticmethod(torch.maximum)

    @staticmethod
    def clamp(x, lo, hi):
        return torch.clamp(x, min=lo, max=hi)

    @staticmethod
    def nan_to_num(x):
        return torch.nan_to_num(x, 0.0)

    @staticmethod
    def f(b):
        return b.double()

    @staticmethod
    def f32(x):
        return x.float()

    and_ = staticmethod(torch.logical_and)
    or_ = staticmethod(torch.logical_or)
    not_ = staticmethod(torch.logical_not)


class ScalarOps:
    """On Python floats and bools (one run), with the tensor semantics: NaN passes through ``clamp``,
    ``log``/``sqrt`` of a negative number is NaN, of 0 is ``-inf``/0."""

    @staticmethod
    def where(c, a, b):
        return a if c else b

    @staticmethod
    def log(x):
        return math.log(x) if x > 0 else (-math.inf if x == 0 else math.nan)

    @staticmethod
    def log10(x):
        return math.log10(x) if x > 0 else (-math.inf if x == 0 else math.nan)

    @staticmethod
    def sqrt(x):
        return math.sqrt(x) if x >= 0 else math.nan

    @staticmethod
    def exp(x):
        return math.exp(x) if x < 709.0 else math.inf

    abs = staticmethod(abs)

    @staticmethod
    def minimum(a, b):
        return math.nan if a != a or b != b else (a if a <= b else b)

    @staticmethod
    def maximum(a, b):
        return math.nan if a != a or b != b else (a if a >= b else b)

    @staticmethod
    def clamp(x, lo, hi):
        if x != x:
            return x
        if lo is not None and x < lo:
            x = lo
        if hi is not None and x > hi:
            x = hi
        return x

    @staticmethod
    def nan_to_num(x):
        return 0.0 if x != x else x

    @staticmethod
    def f(b):
        return 1.0 if b else 0.0

    @staticmethod
    def f32(x):
        """``x`` rounded to float32, as the batched controller keeps its scales (beyond its range: ±inf)."""
        try:
            return _unpack_f32(_pack_f32(x))[0]
        except OverflowError:
            return math.copysign(math.inf, x)

    @staticmethod
    def and_(a, b):
        return bool(a) and bool(b)

    @staticmethod
    def or_(a, b):
        return bool(a) or bool(b)

    @staticmethod
    def not_(a):
        return not a


_pack_f32, _unpack_f32 = struct.Struct("f").pack, struct.Struct("f").unpack
