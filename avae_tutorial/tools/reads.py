"""Counting reads of device values on the host: the calls that stall a GPU.

On a GPU, every read of a tensor's value by Python (``.item()``, ``float(t)``, ``bool(t)``,
``if t.any():``, ``.tolist()``, ``.numpy()``, a boolean-mask index, ``nonzero``) waits for all
queued work to finish. A loop that reads once per layer runs at the speed of its syncs. The same
calls happen on a CPU, so they can be counted there: :class:`HostReads` counts the aten
operators that copy a value to the host or whose output shape depends on values
(``_local_scalar_dense``, ``nonzero``, ``masked_select``, ``unique``, an index by a boolean
mask, ...) and the Python methods
that copy a whole tensor out (``tolist``, ``numpy``).

    with HostReads() as reads:
        avae.align(vae, x)
    print(reads.count, reads.by_op)
"""
from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["HostReads"]

#: aten operators that read values on the host (a sync on a GPU).
SYNC_OPS = frozenset({
    "_local_scalar_dense", "nonzero", "nonzero_static", "masked_select", "unique", "_unique", "_unique2",
    "unique_dim", "unique_consecutive", "repeat_interleave_tensor", "equal", "is_nonzero",
})  # fmt: skip


#: aten operators that read values when an index is a boolean mask (its nonzero runs inside them).
MASK_INDEX_OPS = frozenset({"index", "index_put", "index_put_", "_index_put_impl_"})


def _mask_index(name: str, args) -> bool:
    if name not in MASK_INDEX_OPS or len(args) < 2:
        return False
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in args[1])


class HostReads(TorchDispatchMode):
    """Count the host reads of device values made inside the ``with`` block (see the module).

    ``count``: the total; ``by_op``: a :class:`collections.Counter` by operator name.
    """

    def __init__(self):
        super().__init__()
        self.by_op: Counter = Counter()
        self._patched: list = []

    @property
    def count(self) -> int:
        return sum(self.by_op.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name.split("::")[-1]
        overload = func._overloadname
        if name in SYNC_OPS or (name == "repeat_interleave" and overload == "Tensor") or _mask_index(name, args):
            self.by_op[name] += 1
        return func(*args, **(kwargs or {}))

    def __enter__(self):
        for meth in ("tolist", "numpy"):
            orig = getattr(torch.Tensor, meth)

            def counted(t, *a, _orig=orig, _name=meth, **k):
                self.by_op[_name] += 1
                return _orig(t, *a, **k)

            self._patched.append((meth, orig))
            setattr(torch.Tensor, meth, counted)
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            for meth, orig in reversed(self._patched):
                setattr(torch.Tensor, meth, orig)
            self._patched.clear()
