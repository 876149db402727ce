"""sluice-guest for Python: write a sluice tenant's analytics in Python.

A tenant is a `Tenant` subclass: `init(params, schema)` reads the
manifest's params and resolves typed field handles once; `FUNCTIONS`
lists its `aggregate`s (an `Aggregate` accumulator: `add`/`merge`/
`finish`), `alert` functions (typed per-key `State`) and `process_window`
functions. The app module the build names exports it:

    Analytics = sluice_guest.export(MyTenant)

`sluice build DIR` builds the component with componentize-py (WASI
stubbed out: a tenant has no file, socket or clock capability; `print`
goes to the host's log). Everything else here is plain Python and runs
natively under pytest (`sluice_guest.testing`)."""

from .errors import GuestError
from .events import Batch, Event, Events
from .model import (
    Aggregate,
    Alerts,
    Function,
    Output,
    State,
    Tenant,
    aggregate,
    alert,
    process_window,
)
from .module import Module
from .params import Params, parse_duration_ms
from .schema import (
    BoolField,
    FieldDef,
    FloatField,
    IntField,
    Schema,
    TextField,
    TimestampField,
)


def export(tenant_cls):
    """The class componentize-py exports (only inside the component)."""
    from .component import export as _export

    return _export(tenant_cls)


def log(level: str, message: str) -> None:
    """A line in the tenant's log: level trace, debug, info, warn or error."""
    from .component import log as _log

    _log(level, message)


__all__ = [
    "Aggregate", "Alerts", "Batch", "BoolField", "Event", "Events", "FieldDef", "FloatField",
    "Function", "GuestError", "IntField", "Module", "Output", "Params", "Schema", "State",
    "Tenant", "TextField", "TimestampField", "aggregate", "alert", "export", "log",
    "parse_duration_ms", "process_window",
]
