"""The component adapter: `export(TenantClass)` makes the class
componentize-py exports as `sluice:analytics/analytics`. It converts the
WIT records to the dispatcher's plain data and back, and turns a
`GuestError` into the contract's error value; any other exception traps
(a bug, like a Rust panic).

Imported only inside the component: the `wit_world` bindings exist only
when componentize-py builds it."""

import sys

from componentize_py_types import Err  # type: ignore[import-not-found]
from wit_world.imports import host as _host  # type: ignore[import-not-found]
from wit_world.imports import types as wit  # type: ignore[import-not-found]

from .errors import GuestError
from .events import Batch
from .model import AGGREGATE, ALERT, BOOLEAN, FLOAT, INT, PROCESS_WINDOW
from .module import Module, text_column
from .schema import FieldDef

_KINDS = {
    AGGREGATE: wit.FunctionKind.AGGREGATE,
    ALERT: wit.FunctionKind.ALERT,
    PROCESS_WINDOW: wit.FunctionKind.PROCESS_WINDOW,
}
_COLUMNS = {
    wit.Column_Text: 0,
    wit.Column_Int: 1,
    wit.Column_Float: 2,
    wit.Column_Boolean: 3,
    wit.Column_Timestamp: 4,
}
_VALUES = {
    FLOAT: wit.Value_Float,
    INT: wit.Value_Int,
    "text": wit.Value_Text,
    BOOLEAN: wit.Value_Boolean,
}
_LEVELS = {
    "trace": _host.LogLevel.TRACE,
    "debug": _host.LogLevel.DEBUG,
    "info": _host.LogLevel.INFO,
    "warn": _host.LogLevel.WARN,
    "error": _host.LogLevel.ERROR,
}


def log(level: str, message: str) -> None:
    """A line in the tenant's log (rate-limited by the host)."""
    _host.log(_LEVELS.get(level, _host.LogLevel.INFO), message)


class _HostLog:
    """`sys.stdout`/`sys.stderr`: the build stubs WASI out (no file or
    socket capability reaches a tenant), so `print` goes to the host's log,
    a line at a time, instead of trapping."""

    def __init__(self, level):
        self.level, self.pending = level, ""

    def write(self, text: str) -> int:
        self.pending += text
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            _host.log(self.level, line)
        return len(text)

    def flush(self) -> None:
        if self.pending:
            _host.log(self.level, self.pending)
            self.pending = ""


sys.stdout = _HostLog(_host.LogLevel.INFO)
sys.stderr = _HostLog(_host.LogLevel.WARN)


def _batch(b) -> Batch:
    cols = []
    kinds = _COLUMNS
    for c in b.columns:
        ty = kinds[type(c)]
        v = c.value
        cols.append((ty, (v.data, v.offsets) if ty == 0 else v))
    return Batch(b.times, cols, b.absent)


def _fields(fields):
    values = _VALUES
    return [wit.DataField(name, values[kind](value)) for name, kind, value in fields]


def export(tenant_cls):
    """The `Analytics` export class for `tenant_cls`: in the tenant's app
    module, `Analytics = sluice_guest.export(MyTenant)`."""

    def guest_error(e: GuestError):
        return Err(wit.GuestError(e.message))

    class Analytics:
        module = None

        def _module(self) -> Module:
            m = Analytics.module
            if m is None:
                raise Err(wit.GuestError("init was not called (or the last init failed)"))
            return m

        def describe(self):
            name, version, functions = Module.describe(tenant_cls)
            return wit.ModuleInfo(
                name,
                version,
                [wit.FunctionInfo(f.name, _KINDS[f.kind], list(f.outputs), list(f.alert_kinds))
                 for f in functions],
            )

        def init(self, params, schema):
            Analytics.module = None
            try:
                m = Module(tenant_cls, [tuple(p) for p in params],
                           [FieldDef(f.name, f.ty.value, f.optional) for f in schema])
            except GuestError as e:
                raise guest_error(e) from None
            Analytics.module = m
            return m.reads()

        def aggregate_add(self, function, groups, batch):
            m = self._module()
            s = groups.states
            try:
                data, ends = m.aggregate_add(function, groups.ends, (s.data, s.ends, s.items),
                                             _batch(batch))
            except GuestError as e:
                raise guest_error(e) from None
            return wit.PackedBytes(data, ends)

        def aggregate_merge(self, function, accumulators):
            m = self._module()
            a = accumulators
            try:
                return m.aggregate_merge(function, (a.data, a.ends, a.items))
            except GuestError as e:
                raise guest_error(e) from None

        def aggregate_finish(self, function, windows):
            m = self._module()
            w = windows
            try:
                p = m.aggregate_finish(function, (w.data, w.ends, w.items))
            except GuestError as e:
                raise guest_error(e) from None
            # componentize-py lowers a `list<u8>` from `bytes` in one copy
            # (and only from `bytes`); other lists must be `list`s.
            # Names and texts as text columns (the dispatcher keeps lists).
            return wit.PackedFields(names=wit.TextColumn(*text_column(p.names)),
                                    name_ids=p.name_ids, kinds=bytes(p.kinds), ints=p.ints,
                                    floats=p.floats, texts=wit.TextColumn(*text_column(p.texts)),
                                    windows=p.windows)

        def alert(self, function, groups, batch):
            m = self._module()
            try:
                results = m.alert(
                    function, [(g.key, g.state, g.start, g.len) for g in groups], _batch(batch)
                )
            except GuestError as e:
                raise guest_error(e) from None
            return [
                wit.AlertResult(state, [wit.Alert(kind, time, _fields(data.fields))
                                        for kind, time, data in raised])
                for state, raised in results
            ]

        def process_window(self, function, windows, batch):
            m = self._module()
            try:
                results = m.process_window(
                    function,
                    [(w.key, w.start, w.end, w.first, w.len) for w in windows],
                    _batch(batch),
                )
            except GuestError as e:
                raise guest_error(e) from None
            return [_fields(fields) for fields in results]

    return Analytics
