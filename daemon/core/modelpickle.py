"""Pickles of pydantic models that unpickle without pydantic's Python `__setstate__`, for the compose cache.

Why: a second `specd plan` of 1,000 specs unpickles ~10⁴ table, model and service sub-models from the
compose cache file, and by default each one costs a `__getstate__` dict and a Python `__setstate__` call
that looks the four entries up again (~28 ms for the tables' models alone). Pickled here, a model is
`_restore(cls, __dict__, fields_set, extra, private)`: one call, no state dict — ~¼ less (same-run,
tests/unit/test_plan_warm2.py checks the objects are equal, field sets and private state included).
The state is exactly what `BaseModel.__getstate__` gives (undefined private values left out), and
restored as its `__setstate__` restores it. Only the pickler of the cache uses it (a dispatch table of
its own, not `copyreg`'s), so a model pickled anywhere else is pickled as pydantic pickles it; a model
class made after the table was built is pickled the default way (correct, only not faster).
"""

from __future__ import annotations

import copyreg
import io
import pickle
from typing import Any

_new = object.__new__
_set = object.__setattr__
_TABLE: dict | None = None
_OWN_PICKLING = ("__reduce_ex__", "__reduce__", "__getstate__", "__setstate__", "__getnewargs_ex__", "__getnewargs__")


def _restore(cls: type, data: dict, fields_set: set, extra: dict | None, private: dict | None) -> Any:
    obj = _new(cls)
    _set(obj, "__pydantic_fields_set__", fields_set)
    _set(obj, "__pydantic_extra__", extra)
    _set(obj, "__pydantic_private__", private)
    _set(obj, "__dict__", data)
    return obj


def _reduce(model: Any) -> tuple:
    from pydantic_core import PydanticUndefined

    private = model.__pydantic_private__
    if private:
        private = {k: v for k, v in private.items() if v is not PydanticUndefined}
    return (_restore, (type(model), model.__dict__, model.__pydantic_fields_set__, model.__pydantic_extra__, private))


def _table() -> dict:
    global _TABLE
    if _TABLE is None:
        from pydantic import BaseModel

        table = copyreg.dispatch_table.copy()
        stack = [BaseModel]
        while stack:
            cls = stack.pop()
            stack.extend(cls.__subclasses__())
            own = cls.__mro__[:cls.__mro__.index(BaseModel)]
            if own and not any(name in vars(base) for base in own for name in _OWN_PICKLING):
                table[cls] = _reduce  # a class with a pickling of its own keeps it
        _TABLE = table
    return _TABLE


def dumps(obj: Any) -> bytes:
    """`pickle.dumps(obj, HIGHEST_PROTOCOL)`, pydantic models as `_restore` calls; `pickle.loads` reads it."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _table()
    pickler.dump(obj)
    return buffer.getvalue()
