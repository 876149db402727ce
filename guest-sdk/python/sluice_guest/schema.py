"""The input schema and typed field handles, resolved once in `init`: a
handle is a column index checked against the declared type, so reading a
field per event is an index, and a type mismatch is reported when the
module is deployed rather than on the first event."""

from typing import List, Optional

from .errors import GuestError

# The WIT enum `field-type`, in order.
TEXT, INT, FLOAT, BOOLEAN, TIMESTAMP = range(5)
TYPE_NAMES = ("text", "int", "float", "boolean", "timestamp")


class FieldDef:
    """One declared column: name, type (0..4, as the WIT enum) and whether
    it may be absent."""

    __slots__ = ("name", "ty", "optional")

    def __init__(self, name: str, ty: int, optional: bool = False):
        self.name, self.ty, self.optional = name, int(ty), optional

    def __repr__(self) -> str:
        return f"FieldDef({self.name!r}, {TYPE_NAMES[self.ty]}, optional={self.optional})"


class Field:
    """A typed handle to one column; only `Schema` makes them."""

    __slots__ = ("index", "optional")
    TYPE = -1

    def __init__(self, index: int, optional: bool):
        self.index, self.optional = index, optional

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.index})"


class FloatField(Field):
    TYPE = FLOAT


class IntField(Field):
    TYPE = INT


class TextField(Field):
    TYPE = TEXT


class BoolField(Field):
    TYPE = BOOLEAN


class TimestampField(Field):
    TYPE = TIMESTAMP


class Schema:
    """The columns of every batch, as the manifest declares them."""

    def __init__(self, fields: List[FieldDef]):
        seen = set()
        for f in fields:
            if f.name in seen:
                raise GuestError(f"schema field `{f.name}` is declared twice")
            seen.add(f.name)
        self.fields = list(fields)
        self._used = [False] * len(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def index_of(self, name: str) -> Optional[int]:
        for i, f in enumerate(self.fields):
            if f.name == name:
                return i
        return None

    def used_fields(self) -> List[int]:
        """Indices of the fields a handle was resolved for: the projection
        `init` returns, so the host sends only the columns the module reads."""
        return [i for i, used in enumerate(self._used) if used]

    def is_used(self, index: int) -> bool:
        return 0 <= index < len(self._used) and self._used[index]

    def float(self, name: str) -> FloatField:
        return self._resolve(name, FloatField)

    def int(self, name: str) -> IntField:
        return self._resolve(name, IntField)

    def text(self, name: str) -> TextField:
        return self._resolve(name, TextField)

    def boolean(self, name: str) -> BoolField:
        return self._resolve(name, BoolField)

    def timestamp(self, name: str) -> TimestampField:
        return self._resolve(name, TimestampField)

    def _resolve(self, name: str, kind):
        expected = TYPE_NAMES[kind.TYPE]
        index = self.index_of(name)
        if index is None:
            known = ", ".join(f.name for f in self.fields)
            raise GuestError(
                f"the schema has no field `{name}` (the tenant needs it as {expected}); "
                f"declared fields: [{known}]"
            )
        field = self.fields[index]
        if field.ty != kind.TYPE:
            raise GuestError(
                f"schema field `{name}` is declared as {TYPE_NAMES[field.ty]}, "
                f"but the tenant reads it as {expected}"
            )
        self._used[index] = True
        return kind(index, field.optional)
