"""What a tenant writes: a `Tenant` (params and field handles resolved once
by `init`), `Aggregate` accumulators, typed per-key `State` for alert
functions, `Output` fields and `Alerts`; and the function declarations
(`aggregate`, `alert`, `process_window`) its `FUNCTIONS` list.

Accumulators and states are host-held bytes between calls, so the host can
checkpoint them and a failed call changes nothing. A class with a `STATE`
struct format (fields in `__slots__` order) is packed with `struct`, read
in place from the call's buffer (no copy); one without is pickled."""

import pickle
import struct
from typing import Any, Callable, List, Optional, Sequence, Tuple

from .errors import GuestError

# Value kinds of output fields, as the WIT `value` variant, and their codes
# in `packed-fields.kinds` (the order of the variant's cases).
INT, FLOAT, TEXT, BOOLEAN = "int", "float", "text", "boolean"
KIND_INT, KIND_FLOAT, KIND_TEXT, KIND_BOOLEAN = 0, 1, 2, 3
_KIND_NAMES = (INT, FLOAT, TEXT, BOOLEAN)


class Output:
    """Result fields of a window or an alert, in order:
    `Output().float("mean", m).int("counter", n)`.

    Kept flat, three items a field (name, kind code, value; a boolean as
    0/1), one in-place add per field: `aggregate-finish` takes the names,
    kinds and values out with slices (C loops, not a Python step per field).
    `fields` gives the `(name, kind, value)` tuples."""

    __slots__ = ("_flat",)

    def __init__(self):
        self._flat: list = []

    def float(self, name: str, value: float) -> "Output":
        self._flat += (name, KIND_FLOAT, float(value))
        return self

    def int(self, name: str, value: int) -> "Output":
        self._flat += (name, KIND_INT, int(value))
        return self

    def text(self, name: str, value: str) -> "Output":
        self._flat += (name, KIND_TEXT, str(value))
        return self

    def boolean(self, name: str, value: bool) -> "Output":
        self._flat += (name, KIND_BOOLEAN, 1 if value else 0)
        return self

    @property
    def names(self) -> List[str]:
        return self._flat[0::3]

    @property
    def kinds(self) -> List[int]:
        """Kind codes: 0 int, 1 float, 2 text, 3 boolean."""
        return self._flat[1::3]

    @property
    def values(self) -> list:
        """The values (a boolean as 0/1)."""
        return self._flat[2::3]

    @property
    def fields(self) -> List[Tuple[str, str, Any]]:
        """The fields as `(name, kind, value)`, kind "int", "float", "text"
        or "boolean" (a boolean's value a `bool`)."""
        f = self._flat
        return [
            (f[i], _KIND_NAMES[f[i + 1]], bool(f[i + 2]) if f[i + 1] == KIND_BOOLEAN else f[i + 2])
            for i in range(0, len(f), 3)
        ]


class Alerts:
    """The alerts an alert function raises for one key group."""

    __slots__ = ("raised",)

    def __init__(self):
        self.raised: List[Tuple[str, int, Output]] = []

    def raise_(self, kind: str, event_time: int, data: Optional[Output] = None) -> None:
        """Raises an alert of `kind` (one the function declared) at
        `event_time` (ms), with `data` fields."""
        self.raised.append((kind, event_time, data if data is not None else Output()))

    # `raise` is a keyword; `alert` reads well at the call site too.
    alert = raise_


class _Packed:
    """Encoding of host-held bytes: `STATE` + `__slots__` with struct, or
    pickle when a class declares no `STATE`."""

    __slots__ = ()
    STATE: str = ""
    _struct: Optional[struct.Struct] = None
    # `merge_window(cls, buf, first, last)`: records `first..last` of a
    # buffer of records exactly the STATE's size, merged in order (set
    # where the generated decode is the class's).
    _merge_window: Optional[Callable] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.STATE:
            cls._struct = struct.Struct(cls.STATE)
            slots = _all_slots(cls)
            if len(slots) != len(cls._struct.unpack(bytes(cls._struct.size))):
                raise TypeError(
                    f"{cls.__name__}: STATE {cls.STATE!r} packs "
                    f"{len(cls._struct.unpack(bytes(cls._struct.size)))} values but __slots__ "
                    f"names {len(slots)}"
                )
            cls._slots = slots
            cls._merge_window = None
            _install_struct_codec(cls, slots)

    def encode(self) -> bytes:
        s = type(self)._struct
        if s is not None:
            return s.pack(*[getattr(self, n) for n in type(self)._slots])
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def decode(cls, buf, start: int, end: int):
        """An instance from `buf[start:end]` (a bytes-like of the call)."""
        s = cls._struct
        if s is not None:
            if end - start != s.size:
                raise GuestError(
                    f"{cls.__name__} is {s.size} bytes packed, the host gave {end - start}"
                )
            obj = cls.__new__(cls)
            for name, value in zip(cls._slots, s.unpack_from(buf, start)):
                setattr(obj, name, value)
            return obj
        try:
            obj = pickle.loads(memoryview(buf)[start:end])
        except Exception as e:  # any unpickling failure is bad bytes
            raise GuestError(f"{cls.__name__} could not be decoded: {e}") from None
        if not isinstance(obj, cls):
            raise GuestError(f"the bytes decode to {type(obj).__name__}, not {cls.__name__}")
        return obj


def _generated(f) -> bool:
    return getattr(getattr(f, "__func__", f), "_sluice_generated", False)


def _install_struct_codec(cls, slots: Tuple[str, ...]) -> None:
    """Gives a `STATE` class an `encode` and a `decode` generated for its
    slots (`obj.a, obj.b = unpack_from(...)`: attribute stores, not a
    `setattr` call per field; profiled: `decode` with its `setattr`s was
    over half of a sliding window's `aggregate-finish`, 12 panes a window)
    unless the class (or a base) defines its own. Names the generated code
    cannot spell as attributes (`__x`, mangled) keep the generic code."""
    if not all(n.isidentifier() and not n.startswith("__") for n in slots):
        return
    s = cls._struct
    attrs = ", ".join(f"obj.{n}" for n in slots) + ","
    namespace = {"unpack_from": s.unpack_from, "pack": s.pack, "GuestError": GuestError,
                 "iter_unpack": s.iter_unpack}
    exec(
        f"def encode(obj):\n"
        f"    return pack({attrs})\n"
        f"def decode(cls, buf, start, end):\n"
        f"    if end - start != {s.size}:\n"
        f"        raise GuestError(f'{{cls.__name__}} is {s.size} bytes packed, the host gave "
        f"{{end - start}}')\n"
        f"    obj = cls.__new__(cls)\n"
        f"    {attrs} = unpack_from(buf, start)\n"
        f"    return obj\n"
        # A window's panes: every record after the first unpacked by one
        # `iter_unpack` (no Python call per pane but `merge`).
        f"def merge_window(cls, buf, first, last):\n"
        f"    new = cls.__new__\n"
        f"    acc = obj = new(cls)\n"
        f"    {attrs} = unpack_from(buf, first * {s.size})\n"
        f"    if last - first > 1:\n"
        f"        merge = acc.merge\n"
        f"        for values in iter_unpack(buf[(first + 1) * {s.size}:last * {s.size}]):\n"
        f"            obj = new(cls)\n"
        f"            {attrs} = values\n"
        f"            merge(obj)\n"
        f"    return acc\n",
        namespace,
    )
    for name, f in (("encode", namespace["encode"]), ("decode", namespace["decode"])):
        current = getattr(cls, name)
        base = _Packed.__dict__[name]
        if getattr(current, "__func__", current) is getattr(base, "__func__", base) or _generated(
                current):
            f._sluice_generated = True
            setattr(cls, name, classmethod(f) if name == "decode" else f)
            if name == "decode":
                cls._merge_window = namespace["merge_window"]


def _all_slots(cls) -> Tuple[str, ...]:
    names: List[str] = []
    for klass in reversed(cls.__mro__):
        slots = klass.__dict__.get("__slots__", ())
        names.extend([slots] if isinstance(slots, str) else slots)
    return tuple(names)


class Aggregate(_Packed):
    """An incremental aggregate's accumulator: `add` events, `merge` panes,
    `finish` a window into output fields. `__init__()` (no arguments) makes
    a fresh one. Override `add_events` to read whole columns at once (the
    fast path: one Python call per group, not per event)."""

    __slots__ = ()
    OUTPUTS: Sequence[str] = ()

    def add(self, tenant, event) -> None:
        raise NotImplementedError(f"{type(self).__name__}.add")

    def add_events(self, tenant, events) -> None:
        add = self.add
        for event in events:
            add(tenant, event)

    def merge(self, other) -> None:
        raise NotImplementedError(f"{type(self).__name__}.merge")

    def finish(self, tenant) -> Output:
        raise NotImplementedError(f"{type(self).__name__}.finish")


class State(_Packed):
    """Typed per-key state of an alert function; `__init__()` makes the
    state of a key never seen."""

    __slots__ = ()


class Tenant:
    """A tenant: `init(params, schema)` reads params and resolves field
    handles once per instance; `FUNCTIONS` lists what the manifest may name."""

    NAME = ""
    VERSION = "0.0.0"
    FUNCTIONS: Sequence["Function"] = ()

    def init(self, params, schema) -> None:
        pass


AGGREGATE, PROCESS_WINDOW, ALERT = "aggregate", "process-window", "alert"


class Function:
    """One named function of a tenant (use `aggregate`, `alert` or
    `process_window` to declare one)."""

    __slots__ = ("name", "kind", "outputs", "alert_kinds", "cls", "run")

    def __init__(self, name, kind, outputs, alert_kinds=(), cls=None, run=None):
        self.name, self.kind = name, kind
        self.outputs, self.alert_kinds = list(outputs), list(alert_kinds)
        self.cls, self.run = cls, run


def aggregate(name: str, cls) -> Function:
    """An aggregate whose accumulator is `cls` (an `Aggregate`)."""
    if not (isinstance(cls, type) and issubclass(cls, Aggregate)):
        raise TypeError(f"aggregate `{name}`: {cls!r} is not an Aggregate class")
    return Function(name, AGGREGATE, cls.OUTPUTS, cls=cls)


def alert(name: str, state, kinds: Sequence[str], outputs: Sequence[str],
          run: Callable) -> Function:
    """An alert function `run(tenant, state, key, events, alerts)` with
    per-key `state` (a `State` class), raising alerts of `kinds` whose data
    fields are `outputs`."""
    if not (isinstance(state, type) and issubclass(state, State)):
        raise TypeError(f"alert `{name}`: {state!r} is not a State class")
    return Function(name, ALERT, outputs, kinds, cls=state, run=run)


def process_window(name: str, outputs: Sequence[str], run: Callable) -> Function:
    """A process-window function `run(tenant, key, window, events) -> Output`,
    `window` being `(start, end)` in ms."""
    return Function(name, PROCESS_WINDOW, outputs, run=run)
