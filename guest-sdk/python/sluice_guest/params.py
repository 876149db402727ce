"""The manifest's `[params]`, with typed getters whose messages are the
Rust SDK's: the param, the text it was given and the type it should have."""

from typing import Callable, Iterator, List, Optional, Tuple, TypeVar

from .errors import GuestError

V = TypeVar("V")

_UNITS = {"ms": 1, "s": 1_000, "m": 60_000, "min": 60_000, "h": 3_600_000}
_I64_MAX = (1 << 63) - 1


def _parse_int(raw: str) -> int:
    text = raw.strip()
    # int() accepts "1_000" and surrounding whitespace; Rust's parse does not.
    if not text or "_" in text or not (text.lstrip("+-").isdigit()):
        raise ValueError("invalid digit found in string")
    return int(text)


def _parse_float(raw: str) -> float:
    text = raw.strip()
    if "_" in text or not text:
        raise ValueError("invalid float literal")
    return float(text)


def _parse_bool(raw: str) -> bool:
    text = raw.strip()
    if text == "true":
        return True
    if text == "false":
        return False
    raise ValueError("provided string was not `true` or `false`")


_PARSERS = {int: (_parse_int, "int"), float: (_parse_float, "float"), bool: (_parse_bool, "bool"),
            str: (lambda raw: raw.strip(), "str")}


def parse_duration_ms(raw: str) -> int:
    """`<non-negative integer><unit>`, unit one of ms, s, m, h, in ms.

    A unit is mandatory: a bare `600` is ambiguous between seconds and
    milliseconds, and guessing wrong is off by 1000x. Raises ValueError
    with the Rust SDK's reason."""
    text = raw.strip()
    split = next((i for i, c in enumerate(text) if not ("0" <= c <= "9")), None)
    if split is None:
        raise ValueError('a duration needs a unit: ms, s, m or h (e.g. "10m")')
    digits, unit = text[:split], text[split:]
    if not digits:
        raise ValueError('a duration starts with a non-negative integer (e.g. "10m")')
    amount = int(digits)
    if amount > _I64_MAX:
        raise ValueError(f"`{digits}` is not a valid amount: number too large to fit in target type")
    scale = _UNITS.get(unit.strip())
    if scale is None:
        raise ValueError(f"unknown duration unit `{unit.strip()}`; use ms, s, m or h")
    if amount * scale > _I64_MAX:
        raise ValueError("the duration is too large")
    return amount * scale


def _quoted(raw: str) -> str:
    """The text as Rust's `{:?}` shows it (double quotes, escapes)."""
    out = raw.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{out}"'


class Params:
    """The `[params]` of the tenant's manifest, as given to `init`."""

    __slots__ = ("_entries",)

    def __init__(self, entries: List[Tuple[str, str]]):
        seen = set()
        for name, _ in entries:
            if name in seen:
                raise GuestError(f"param `{name}` is given twice")
            seen.add(name)
        self._entries = list(entries)

    def get_str(self, name: str) -> Optional[str]:
        """The raw text of a param, if given."""
        for n, v in self._entries:
            if n == name:
                return v
        return None

    def __iter__(self) -> Iterator[Tuple[str, str]]:
        return iter(self._entries)

    def get(self, name: str, ty: Callable[[str], V] = str) -> Optional[V]:
        """Parses a param of type `ty` (int, float, bool, str or any callable
        raising ValueError) if present."""
        raw = self.get_str(name)
        if raw is None:
            return None
        parse, type_name = _PARSERS.get(ty, (ty, getattr(ty, "__name__", str(ty))))
        try:
            return parse(raw)
        except (ValueError, TypeError) as e:
            raise GuestError(f"param `{name}` = {_quoted(raw)} is not a valid {type_name}: {e}") from None

    def get_or(self, name: str, default: V) -> V:
        """Parses a param as the type of `default`, or returns `default`."""
        value = self.get(name, type(default))
        return default if value is None else value

    def require(self, name: str, ty: Callable[[str], V] = str) -> V:
        """Parses a param that must be given."""
        value = self.get(name, ty)
        if value is None:
            raise GuestError(f"param `{name}` is required but not given")
        return value

    def duration_ms_or(self, name: str, default_ms: int) -> int:
        """A duration such as "500ms", "60s", "10m" or "2h", in ms."""
        raw = self.get_str(name)
        if raw is None:
            return default_ms
        try:
            return parse_duration_ms(raw)
        except ValueError as why:
            raise GuestError(f"param `{name}` = {_quoted(raw)}: {why}") from None
