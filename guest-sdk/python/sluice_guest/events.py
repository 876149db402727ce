"""A batch's columns as Python sequences, and the events of one key group
or window as a view over them.

The host sends a batch once per call, column by column; each column is
turned into a Python sequence at most once per call, when first read, and
every group's `Events` is a row range over it (no copy per group). Text
columns come as one string with UTF-8 byte offsets: an ASCII column is
sliced directly (byte offset = character offset), any other is sliced as
UTF-8 bytes and decoded per value."""

from typing import Iterator, List, Optional, Sequence

from .errors import GuestError
from .schema import BOOLEAN, FLOAT, INT, TEXT, TIMESTAMP, TYPE_NAMES, Field, Schema


def _text_values(data: str, offsets: Sequence[int]) -> List[str]:
    n = len(offsets) - 1
    if n <= 0:
        return []
    if data.isascii():
        return [data[offsets[i]:offsets[i + 1]] for i in range(n)]
    raw = data.encode("utf-8")
    if offsets[-1] > len(raw):
        raise GuestError(f"text column offsets end at {offsets[-1]}, past its {len(raw)} bytes")
    try:
        return [raw[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n)]
    except UnicodeDecodeError as e:
        raise GuestError(f"a text column offset splits a UTF-8 character: {e}") from None


class Batch:
    """The columns of one call's event batch (plain Python data).

    `columns[i]` is `(type, values)`: for text `values` is `(data, offsets)`,
    for booleans a `bytes` of 0/1, otherwise a list of numbers. `absent[i]`
    lists the rows where optional field i is absent."""

    __slots__ = ("times", "_raw", "_decoded", "_absent")

    def __init__(self, times: Sequence[int], columns: list, absent: Sequence[Sequence[int]] = ()):
        self.times = times
        self._raw = columns
        self._decoded: list = [None] * len(columns)
        self._absent = [frozenset(a) if a else None for a in absent] + [None] * (
            len(columns) - len(absent)
        )

    def __len__(self) -> int:
        return len(self.times)

    def column(self, index: int) -> Sequence:
        """Column `index` as a sequence indexed by row (text decoded once)."""
        values = self._decoded[index]
        if values is None:
            ty, raw = self._raw[index]
            values = _text_values(*raw) if ty == TEXT else raw
            self._decoded[index] = values
        return values

    def absent_rows(self, index: int) -> Optional[frozenset]:
        return self._absent[index] if index < len(self._absent) else None

    def validate(self, schema: Schema) -> None:
        """The Rust SDK's checks: one column per field, of its type, of the
        batch's length unless it is a column the module does not read."""
        rows = len(self.times)
        if len(self._raw) != len(schema):
            raise GuestError(
                f"batch has {len(self._raw)} columns but the schema declares {len(schema)} fields"
            )
        for index, ((ty, raw), field) in enumerate(zip(self._raw, schema.fields)):
            if ty != field.ty:
                raise GuestError(
                    f"batch column `{field.name}` is {TYPE_NAMES[ty]}, but the schema declares "
                    f"{TYPE_NAMES[field.ty]}"
                )
            length = len(raw[1]) - 1 if ty == TEXT else len(raw)
            if ty == TEXT and length < 0:
                length = 0
            if not schema.is_used(index) and length == 0:
                continue
            if length != rows:
                raise GuestError(
                    f"batch column `{field.name}` has {length} values for {rows} rows"
                )


class Event:
    """One row of a group: its event time and typed field values."""

    __slots__ = ("_batch", "row")

    def __init__(self, batch: Batch, row: int):
        self._batch, self.row = batch, row

    @property
    def time(self) -> int:
        """Event time, ms since the Unix epoch."""
        return self._batch.times[self.row]

    def get(self, field: Field):
        """The field's value: float, int, str, bool; None when an optional
        field is absent in this row."""
        b = self._batch
        if field.optional:
            absent = b.absent_rows(field.index)
            if absent is not None and self.row in absent:
                return None
        value = b.column(field.index)[self.row]
        return bool(value) if field.TYPE == BOOLEAN else value


class Events:
    """The events of one key group (or window), in order: iterate for
    `Event`s, or read whole columns with `values` (the fast path)."""

    __slots__ = ("_batch", "start", "end")

    def __init__(self, batch: Batch, start: int, end: int):
        self._batch, self.start, self.end = batch, start, end

    def __len__(self) -> int:
        return self.end - self.start

    def __iter__(self) -> Iterator[Event]:
        b = self._batch
        return (Event(b, row) for row in range(self.start, self.end))

    @property
    def times(self) -> Sequence[int]:
        return self._batch.times[self.start:self.end]

    def values(self, field: Field) -> Sequence:
        """The field's values for these rows (a slice of the column:
        booleans as 0/1 ints; an absent optional value as None)."""
        b = self._batch
        index = field.index
        # The decoded column straight from the cache: a call per group and
        # field is a cost in itself when groups are one row.
        column = b._decoded[index]
        if column is None:
            column = b.column(index)
        values = column[self.start:self.end]
        if not field.optional:
            return values
        absent = b.absent_rows(index)
        if absent:
            values = list(values)
            for row in absent:
                if self.start <= row < self.end:
                    values[row - self.start] = None
        return values


def _check_rows(rows: int, start: int, length: int) -> None:
    if start + length > rows:
        raise GuestError(f"rows {start}..{start}+{length} are outside the batch of {rows} rows")


__all__ = ["Batch", "Event", "Events", "FLOAT", "INT", "TIMESTAMP"]
