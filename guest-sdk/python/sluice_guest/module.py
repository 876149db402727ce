"""The dispatcher: a tenant's functions behind the contract's calls, over
plain Python data (the component adapter converts the WIT records; tests
call it directly). All packing and unpacking of the contract is here."""

from functools import lru_cache
from itertools import accumulate
from operator import itemgetter
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from .errors import GuestError
from .events import Batch, Events
from .model import (
    AGGREGATE, ALERT, KIND_BOOLEAN, KIND_FLOAT, KIND_INT, KIND_TEXT, PROCESS_WINDOW, Alerts,
    Function, Tenant,
)
from .params import Params
from .schema import FieldDef, Schema

_ARTICLE = {AGGREGATE: "an", ALERT: "an", PROCESS_WINDOW: "a"}


class PackedFields(NamedTuple):
    """The contract's `packed-fields`: field `f` is named
    `names[name_ids[f]]`, its kind is `kinds[f]` (0 int, 1 float, 2 text, 3
    boolean) and its value the next of that kind's column (`ints` for int
    and boolean fields, a boolean as 0/1)."""

    names: List[str]
    name_ids: List[int]
    kinds: List[int]
    ints: List[int]
    floats: List[float]
    texts: List[str]
    windows: List[int]

    def fields(self) -> List[Dict[str, Any]]:
        """Each window's fields as `{name: value}` (booleans as `bool`):
        what a tenant's tests compare, whatever the contract's packing."""
        ints, floats, texts = iter(self.ints), iter(self.floats), iter(self.texts)
        take = (lambda: next(ints), lambda: next(floats), lambda: next(texts),
                lambda: next(ints) != 0)
        out, at = [], 0
        for end in self.windows:
            out.append({self.names[self.name_ids[f]]: take[self.kinds[f]]() for f in range(at, end)})
            at = end
        return out


def text_column(strings: List[str]) -> Tuple[str, List[int]]:
    """Strings as the contract's text column: one string and UTF-8 byte
    offsets (none at all for no strings). Why the contract has it: a
    `list<string>` costs the host an allocation per string."""
    if not strings:
        return "", []
    data = "".join(strings)
    lengths = map(len, strings) if data.isascii() else (len(s.encode("utf-8")) for s in strings)
    return data, list(accumulate(lengths, initial=0))


def _picker(indices: List[int]):
    """A function of a window's values: those at `indices`, as a sequence
    (`itemgetter`: one C call, not a Python step per value)."""
    if not indices:
        return None
    if len(indices) == 1:
        (k,) = indices
        return lambda values: (values[k],)
    return itemgetter(*indices)


class _Split(NamedTuple):
    ints: Any
    floats: Any
    texts: Any


@lru_cache(maxsize=64)
def _split_cached(kinds: Tuple[int, ...]) -> _Split:
    for f, k in enumerate(kinds):
        if k not in (KIND_INT, KIND_FLOAT, KIND_TEXT, KIND_BOOLEAN):
            raise GuestError(f"field {f} has kind {k}, not 0..=3")
    return _Split(
        _picker([f for f, k in enumerate(kinds) if k == KIND_INT or k == KIND_BOOLEAN]),
        _picker([f for f, k in enumerate(kinds) if k == KIND_FLOAT]),
        _picker([f for f, k in enumerate(kinds) if k == KIND_TEXT]),
    )


def _split_of(kinds: List[int]) -> _Split:
    """How values of fields of `kinds` go to the int, float and text columns."""
    return _split_cached(tuple(kinds))


def _at(f: Function) -> str:
    return f"{f.kind} `{f.name}`"


def _bounds(data_len: int, ends: Sequence[int], items: Sequence[int]) -> None:
    """Checks packed accumulators: ends ascending within the data, items
    ascending within the ends (the Rust SDK's rules)."""
    # The common case in C loops (sorting a sorted list is one pass); the
    # loops below only find what is wrong.
    if (not ends or (ends[0] >= 0 and ends[-1] <= data_len and list(ends) == sorted(ends))) and (
            not items or (items[0] >= 0 and items[-1] <= len(ends)
                          and list(items) == sorted(items))):
        return
    last = 0
    for j, end in enumerate(ends):
        if end < last or end > data_len:
            raise GuestError(
                f"packed accumulators: accumulator {j} ends at {end}, outside {last}..={data_len}"
            )
        last = end
    last = 0
    for i, item in enumerate(items):
        if item < last or item > len(ends):
            raise GuestError(
                f"packed accumulators: item {i} ends at accumulator {item}, outside "
                f"{last}..={len(ends)}"
            )
        last = item


class Module:
    """One instance's tenant: built by `init`, then serving every call."""

    def __init__(self, tenant_cls, params: List[Tuple[str, str]], schema: List[FieldDef]):
        self.schema = Schema(schema)
        self.tenant: Tenant = tenant_cls()
        self.tenant.init(Params(params), self.schema)
        self.functions: Dict[str, Function] = {}
        for f in tenant_cls.FUNCTIONS:
            self.functions[f.name] = f
        self.name = tenant_cls.NAME

    @staticmethod
    def describe(tenant_cls) -> Tuple[str, str, List[Function]]:
        return tenant_cls.NAME, tenant_cls.VERSION, list(tenant_cls.FUNCTIONS)

    def reads(self) -> List[int]:
        return self.schema.used_fields()

    def find(self, name: str, kind: str) -> Function:
        f = self.functions.get(name)
        if f is None:
            known = ", ".join(self.functions)
            raise GuestError(f"module `{self.name}` has no function `{name}` (it has: [{known}])")
        if f.kind != kind:
            raise GuestError(
                f"function `{f.name}` is {_ARTICLE[f.kind]} {f.kind} function, not "
                f"{_ARTICLE[kind]} {kind} function"
            )
        return f

    # -- aggregates -------------------------------------------------------

    def aggregate_add(
        self,
        function: str,
        group_ends: Sequence[int],
        states: Tuple[bytes, Sequence[int], Sequence[int]],
        batch: Batch,
    ) -> Tuple[bytes, List[int]]:
        """Adds each group's rows (group i: rows `group_ends[i-1]..group_ends[i]`)
        to its accumulator (item i of `states`: one, or none for a fresh
        one); returns the new accumulators packed."""
        f = self.find(function, AGGREGATE)
        try:
            batch.validate(self.schema)
        except GuestError as e:
            raise e.context(_at(f)) from None
        data, ends, items = states
        if len(items) != len(group_ends):
            raise GuestError(
                f"{_at(f)}: {len(group_ends)} groups but {len(items)} accumulator items"
            )
        _bounds(len(data), ends, items)
        cls, t = f.cls, self.tenant
        rows = len(batch.times)
        out: List[bytes] = []
        out_ends: List[int] = []
        size = start = first = 0
        for i, end in enumerate(group_ends):
            if end < start or end > rows:
                raise GuestError(
                    f"{_at(f)}, group {i}: rows {start}..{end} are outside the batch of {rows} rows"
                )
            item = items[i]
            try:
                if item == first:
                    acc = cls()
                elif item == first + 1:
                    acc = cls.decode(data, ends[first - 1] if first else 0, ends[first])
                else:
                    raise GuestError(f"{item - first} accumulators for one group (at most 1)")
                acc.add_events(t, Events(batch, start, end))
            except GuestError as e:
                raise e.context(f"{_at(f)}, group {i}") from None
            encoded = acc.encode()
            out.append(encoded)
            size += len(encoded)
            out_ends.append(size)
            start, first = end, item
        return b"".join(out), out_ends

    def _merged(self, f: Function, data, ends, first: int, last: int, window=None):
        """The accumulators `first..last` merged in order (none: a fresh one);
        with `window` (a STATE class's `_merge_window`, over a memoryview of
        uniform records) in one generated loop."""
        cls = f.cls
        if first == last:
            return cls()
        if window is not None:
            return window(cls, data, first, last)
        acc = cls.decode(data, ends[first - 1] if first else 0, ends[first])
        for j in range(first + 1, last):
            acc.merge(cls.decode(data, ends[j - 1], ends[j]))
        return acc

    @staticmethod
    def _window_merger(f: Function, data, ends):
        """`(data, window)` for `_merged`: the STATE class's generated
        window merge and a memoryview of `data` when every accumulator is
        exactly its size (checked in one C comparison), else `(data, None)`."""
        window = f.cls._merge_window
        if window is None or not ends:
            return data, None
        size = f.cls._struct.size
        if list(ends) != list(range(size, size * len(ends) + 1, size)):
            return data, None
        return memoryview(data), window

    def aggregate_merge(
        self, function: str, packed: Tuple[bytes, Sequence[int], Sequence[int]]
    ) -> List[bytes]:
        """Merges each item's accumulators in order (none: a fresh one)."""
        f = self.find(function, AGGREGATE)
        data, ends, items = packed
        _bounds(len(data), ends, items)
        data, window = self._window_merger(f, data, ends)
        out = []
        first = 0
        for i, last in enumerate(items):
            try:
                out.append(self._merged(f, data, ends, first, last, window).encode())
            except GuestError as e:
                raise e.context(f"{_at(f)}, list {i}") from None
            first = last
        return out

    def aggregate_finish(
        self, function: str, packed: Tuple[bytes, Sequence[int], Sequence[int]]
    ) -> PackedFields:
        """For each window, merges its panes and finishes them: the fields
        packed by column (names once, name ids, kinds, the int, float and
        text columns, window ends)."""
        f = self.find(function, AGGREGATE)
        data, ends, items = packed
        _bounds(len(data), ends, items)
        names: List[str] = []
        ids: Dict[str, int] = {}
        name_ids: List[int] = []
        kinds: List[int] = []
        ints: list = []
        floats: list = []
        texts: list = []
        windows: List[int] = []
        t = self.tenant
        # Windows of one aggregate mostly have the same fields: their ids
        # and how their values split into columns are the last window's.
        last_names: Optional[list] = None
        last_ids: List[int] = []
        last_kinds: Optional[list] = None
        split = _Split(None, None, None)
        data, window = self._window_merger(f, data, ends)
        first = 0
        for i, last in enumerate(items):
            try:
                out = self._merged(f, data, ends, first, last, window).finish(t)
            except GuestError as e:
                raise e.context(f"{_at(f)}, window {i}") from None
            flat = out._flat
            out_names, out_kinds, values = flat[0::3], flat[1::3], flat[2::3]
            if out_names != last_names:
                last_ids = []
                for name in out_names:
                    nid = ids.get(name)
                    if nid is None:
                        nid = ids[name] = len(names)
                        names.append(name)
                    last_ids.append(nid)
                last_names = out_names
            if out_kinds != last_kinds:
                split = _split_of(out_kinds)
                last_kinds = out_kinds
            name_ids += last_ids
            kinds += out_kinds
            if split.ints is not None:
                ints += split.ints(values)
            if split.floats is not None:
                floats += split.floats(values)
            if split.texts is not None:
                texts += split.texts(values)
            windows.append(len(name_ids))
            first = last
        return PackedFields(names, name_ids, kinds, ints, floats, texts, windows)

    # -- alerts and process-window functions ------------------------------

    def alert(
        self,
        function: str,
        groups: Sequence[Tuple[List[str], Optional[bytes], int, int]],
        batch: Batch,
    ) -> List[Tuple[bytes, list]]:
        """Runs the alert function on each (key, state, start, len) group;
        returns (new state, raised alerts) per group."""
        f = self.find(function, ALERT)
        try:
            batch.validate(self.schema)
        except GuestError as e:
            raise e.context(_at(f)) from None
        cls, run, t = f.cls, f.run, self.tenant
        kinds = f.alert_kinds
        rows = len(batch.times)
        results = []
        for i, (key, state, start, length) in enumerate(groups):
            try:
                if start + length > rows:
                    raise GuestError(
                        f"rows {start}..{start}+{length} are outside the batch of {rows} rows"
                    )
                s = cls() if state is None else cls.decode(state, 0, len(state))
                alerts = Alerts()
                run(t, s, key, Events(batch, start, start + length), alerts)
            except GuestError as e:
                raise e.context(f"{_at(f)}, group {i} (key {'/'.join(key)})") from None
            for kind, _, _ in alerts.raised:
                if kind not in kinds:
                    raise GuestError(
                        f"{_at(f)}, group {i} (key {'/'.join(key)}): raised undeclared alert "
                        f"kind `{kind}` (declared: [{', '.join(kinds)}])"
                    )
            results.append((s.encode(), alerts.raised))
        return results

    def process_window(
        self,
        function: str,
        windows: Sequence[Tuple[List[str], int, int, int, int]],
        batch: Batch,
    ) -> List[list]:
        """Runs the function on each (key, start, end, first, len) window;
        returns each window's fields."""
        f = self.find(function, PROCESS_WINDOW)
        try:
            batch.validate(self.schema)
        except GuestError as e:
            raise e.context(_at(f)) from None
        rows = len(batch.times)
        out = []
        for i, (key, start, end, first, length) in enumerate(windows):
            try:
                if first + length > rows:
                    raise GuestError(
                        f"rows {first}..{first}+{length} are outside the batch of {rows} rows"
                    )
                output = f.run(self.tenant, key, (start, end), Events(batch, first, first + length))
            except GuestError as e:
                raise e.context(f"{_at(f)}, window {i}") from None
            out.append(output.fields)
        return out
