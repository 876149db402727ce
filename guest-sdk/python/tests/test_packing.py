"""The contract's packed forms, unpacked and packed by the SDK."""

import struct

import pytest

from sluice_guest import (
    Aggregate, Batch, FieldDef, GuestError, Module, Output, State, Tenant, aggregate, alert,
    process_window,
)

FLOAT, TEXT, BOOL = 2, 0, 3


class Sum(Aggregate):
    OUTPUTS = ("sum", "n")
    STATE = "<dq"
    __slots__ = ("sum", "n")

    def __init__(self):
        self.sum, self.n = 0.0, 0

    def add(self, t, event):
        self.sum += event.get(t.x)
        self.n += 1

    def merge(self, other):
        self.sum += other.sum
        self.n += other.n

    def finish(self, t):
        return Output().float("sum", self.sum).int("n", self.n)


class Seen(State):
    """No STATE format: pickled."""

    def __init__(self):
        self.names = []


def names(t, s, key, events, out):
    for e in events:
        s.names.append(e.get(t.name))
        if e.get(t.flag):
            out.raise_("flag", e.time, Output().text("name", e.get(t.name)))
        if e.get(t.note) is None:
            out.raise_("no-note", e.time)


def longest(t, key, window, events):
    return Output().text("key", "/".join(key)).int("start", window[0]).text(
        "longest", max(events.values(t.name), key=len))


class Toy(Tenant):
    NAME = "toy"
    VERSION = "1.0"
    FUNCTIONS = [
        aggregate("sum", Sum),
        alert("names", Seen, kinds=["flag", "no-note"], outputs=["name"], run=names),
        process_window("longest", ["key", "start", "longest"], longest),
    ]

    def init(self, params, schema):
        self.x = schema.float("x")
        self.name = schema.text("name")
        self.flag = schema.boolean("flag")
        self.note = schema.text("note")


SCHEMA = [FieldDef("x", FLOAT), FieldDef("name", TEXT), FieldDef("flag", BOOL),
          FieldDef("note", TEXT, optional=True), FieldDef("unread", FLOAT)]


def text(*values):
    data, offsets = "", [0]
    for v in values:
        data += v
        offsets.append(len(data.encode()))
    return data, offsets


def batch(xs, names_, flags, notes=None, absent_notes=()):
    n = len(xs)
    notes = notes or ["n"] * n
    return Batch(list(range(0, 1000 * n, 1000)),
                 [(FLOAT, xs), (TEXT, text(*names_)), (BOOL, bytes(flags)),
                  (TEXT, text(*notes)), (FLOAT, [])],
                 [[], [], [], list(absent_notes), []])


def module():
    return Module(Toy, [], SCHEMA)


def test_init_returns_the_fields_read():
    assert module().reads() == [0, 1, 2, 3]


def test_add_groups_fresh_and_held_accumulators_come_back_packed():
    m = module()
    held = struct.pack("<dq", 10.0, 2)
    b = batch([1.0, 2.0, 4.0], ["a", "b", "c"], [0, 0, 0])
    # Group 0: rows 0..1, fresh; group 1: rows 1..3, its held accumulator.
    data, ends = m.aggregate_add("sum", [1, 3], (held, [len(held)], [0, 1]), b)
    assert ends == [16, 32]
    assert struct.unpack_from("<dq", data, 0) == (1.0, 1)
    assert struct.unpack_from("<dq", data, 16) == (16.0, 4)


def test_merge_and_finish_read_packed_panes_in_place():
    m = module()
    panes = [struct.pack("<dq", v, 1) for v in (1.0, 2.0, 3.0)]
    data = b"".join(panes)
    # Item 0: panes 0 and 1; item 1: none (fresh); item 2: pane 2.
    merged = m.aggregate_merge("sum", (data, [16, 32, 48], [2, 2, 3]))
    assert [struct.unpack("<dq", x) for x in merged] == [(3.0, 2), (0.0, 0), (3.0, 1)]
    fin = m.aggregate_finish("sum", (memoryview(data), [16, 32, 48], [2, 2, 3]))
    assert fin.names == ["sum", "n"]  # each name once per call
    assert fin.name_ids == [0, 1, 0, 1, 0, 1]
    assert fin.kinds == [1, 0, 1, 0, 1, 0]
    assert fin.floats == [3.0, 0.0, 3.0] and fin.ints == [2, 0, 1] and fin.texts == []
    assert fin.windows == [2, 4, 6]
    assert unpack(fin) == [[("sum", "float", 3.0), ("n", "int", 2)],
                           [("sum", "float", 0.0), ("n", "int", 0)],
                           [("sum", "float", 3.0), ("n", "int", 1)]]


def unpack(fin):
    """Packed fields read back by the contract's rules: a `(name, kind,
    value)` list per window (a boolean as 0/1); every column used up."""
    ints = iter(fin.ints)  # int and boolean fields share the column
    columns = {0: ints, 1: iter(fin.floats), 2: iter(fin.texts), 3: ints}
    assert len(fin.kinds) == len(fin.name_ids)
    out, f = [], 0
    for end in fin.windows:
        out.append([(fin.names[fin.name_ids[g]], ("int", "float", "text", "boolean")[fin.kinds[g]],
                     next(columns[fin.kinds[g]])) for g in range(f, end)])
        f = end
    assert f == len(fin.kinds)
    for column in columns.values():
        assert next(column, None) is None, "a column is not used up"
    return out


class Mixed(Aggregate):
    """Windows whose fields differ in kind, name and number: `n` fields."""

    OUTPUTS = ("f*",)
    STATE = "<I"
    __slots__ = ("n",)

    def __init__(self):
        self.n = 0

    def merge(self, other):
        self.n += other.n

    def finish(self, t):
        out = Output()
        for i in range(self.n):
            [lambda: out.int(f"f{i}", -(2 ** 40) - i), lambda: out.float(f"f{i}", i / 3),
             lambda: out.text(f"f{i}", f"t{i}é"), lambda: out.boolean(f"f{i}", i % 2 == 0),
             lambda: out.int(f"f{i}", 2 ** 62)][i % 5]()
        return out


class MixedTenant(Tenant):
    FUNCTIONS = [aggregate("mixed", Mixed)]


def test_fields_of_every_kind_go_to_their_columns_in_field_order():
    m = Module(MixedTenant, [], [])
    counts = [5, 0, 7, 7, 2, 40, 1, 3]
    data = struct.pack(f"<{len(counts)}I", *counts)
    fin = m.aggregate_finish("mixed", (data, [4 * (i + 1) for i in range(len(counts))],
                                       list(range(1, len(counts) + 1))))
    expected = []
    for n in counts:
        acc = Mixed()
        acc.n = n
        expected.append([(name, kind, int(v) if kind == "boolean" else v)
                         for name, kind, v in acc.finish(None).fields])
    assert unpack(fin) == expected
    assert len(fin.names) == 40
    assert fin.kinds[:5] == [0, 1, 2, 3, 0]


def test_output_fields_keep_the_tenant_facing_tuples():
    out = Output().int("a", 3).float("b", 1).text("c", 7).boolean("d", "yes")
    assert out.fields == [("a", "int", 3), ("b", "float", 1.0), ("c", "text", "7"),
                          ("d", "boolean", True)]
    assert type(out.fields[3][2]) is bool


def test_malformed_packing_is_a_guest_error():
    m = module()
    with pytest.raises(GuestError, match="accumulator 1 ends at 8, outside 16..=32"):
        m.aggregate_merge("sum", (bytes(32), [16, 8], [2]))
    with pytest.raises(GuestError, match="item 0 ends at accumulator 3, outside 0..=1"):
        m.aggregate_merge("sum", (bytes(16), [16], [3]))
    with pytest.raises(GuestError, match=r"aggregate `sum`, list 0: Sum is 16 bytes packed, "
                                         r"the host gave 4"):
        m.aggregate_merge("sum", (bytes(4), [4], [1]))


def test_text_offsets_are_utf8_bytes_into_a_str():
    m = module()
    b = batch([0.0, 0.0, 0.0], ["été", "x", "日本"], [1, 0, 1])
    res = m.alert("names", [(["k"], None, 0, 3)], b)
    (state, raised), = res
    assert [(k, t, d.fields) for k, t, d in raised] == [
        ("flag", 0, [("name", "text", "été")]),
        ("flag", 2000, [("name", "text", "日本")]),
    ]
    # The pickled state comes back next call and keeps growing.
    res = m.alert("names", [(["k"], state, 1, 1)], b)
    assert Seen.decode(res[0][0], 0, len(res[0][0])).names == ["été", "x", "日本", "x"]


def test_an_absent_optional_field_reads_as_none():
    m = module()
    b = batch([0.0, 0.0], ["a", "b"], [0, 0], notes=["n", ""], absent_notes=[1])
    (_, raised), = m.alert("names", [(["k"], None, 0, 2)], b)
    assert [(k, t) for k, t, _ in raised] == [("no-note", 1000)]


def test_process_window_gets_its_rows_key_and_bounds():
    m = module()
    b = batch([0.0] * 3, ["a", "bbb", "cc"], [0, 0, 0])
    out = m.process_window("longest", [(["s1", "d"], 60_000, 120_000, 0, 3)], b)
    assert out == [[("key", "text", "s1/d"), ("start", "int", 60_000),
                    ("longest", "text", "bbb")]]


def test_errors_name_the_function_group_and_key():
    m = module()
    b = batch([1.0], ["a"], [0])
    with pytest.raises(GuestError, match=r"module `toy` has no function `nope` \(it has: "
                                         r"\[sum, names, longest\]\)"):
        m.alert("nope", [], b)
    with pytest.raises(GuestError, match="function `sum` is an aggregate function, not an "
                                         "alert function"):
        m.alert("sum", [], b)
    with pytest.raises(GuestError, match=r"alert `names`, group 0 \(key k/1\): rows 0..0\+5 "
                                         r"are outside the batch of 1 rows"):
        m.alert("names", [(["k", "1"], None, 0, 5)], b)


def test_batch_columns_are_checked_against_the_schema():
    m = module()
    b = Batch([0], [(FLOAT, [1.0]), (FLOAT, [2.0]), (BOOL, b"\0"), (TEXT, text("x")),
                    (FLOAT, [])])
    with pytest.raises(GuestError, match="batch column `name` is float, but the schema "
                                         "declares text"):
        m.aggregate_add("sum", [1], (b"", [], [0]), b)


def test_schema_errors_have_the_rust_sdks_messages():
    class Wants(Tenant):
        NAME = "w"

        def init(self, params, schema):
            schema.int("x")

    with pytest.raises(GuestError, match="schema field `x` is declared as float, but the tenant "
                                         "reads it as int"):
        Module(Wants, [], SCHEMA)
    with pytest.raises(GuestError, match=r"the schema has no field `x` \(the tenant needs it as "
                                         r"int\); declared fields: \[\]"):
        Module(Wants, [], [])


def test_a_state_format_must_match_the_slots():
    with pytest.raises(TypeError, match="packs 2 values but __slots__ names 1"):
        class Bad(Aggregate):  # noqa: F841
            STATE = "<dd"
            __slots__ = ("a",)


class Pair(Aggregate):
    STATE = "<qd"
    __slots__ = ("n", "x")


class OwnCodec(Aggregate):
    """Its own encode/decode, inherited by a subclass with a STATE."""

    __slots__ = ("n",)

    def encode(self):
        return b"own"

    @classmethod
    def decode(cls, buf, start, end):
        obj = cls.__new__(cls)
        obj.n = -1
        return obj


class OwnChild(OwnCodec):
    STATE = "<q"
    __slots__ = ()


def test_state_classes_get_a_generated_codec_unless_they_have_their_own():
    p = Pair()
    p.n, p.x = -(2 ** 62), 0.25
    raw = b"xy" + p.encode()
    back = Pair.decode(memoryview(raw), 2, len(raw))
    assert (type(back), back.n, back.x) == (Pair, -(2 ** 62), 0.25)
    with pytest.raises(GuestError, match="Pair is 16 bytes packed, the host gave 15"):
        Pair.decode(raw, 2, len(raw) - 1)
    c = OwnChild()
    c.n = 5
    assert c.encode() == b"own" and OwnChild.decode(b"", 0, 0).n == -1


class Digits(Aggregate):
    """An order-sensitive merge: the panes' digits in merge order."""

    STATE = "<q"
    __slots__ = ("n",)

    def __init__(self):
        self.n = 0

    def merge(self, other):
        self.n = self.n * 10 + other.n

    def finish(self, t):
        return Output().int("n", self.n)


class DigitsTenant(Tenant):
    FUNCTIONS = [aggregate("digits", Digits)]


def test_window_merges_keep_pane_order_with_uniform_panes_or_not():
    m = Module(DigitsTenant, [], [])
    data = struct.pack("<5q", 1, 2, 3, 4, 5)
    # Items: panes 0..3, none, pane 3, panes 3..5.
    items = [3, 3, 4, 5]
    assert [struct.unpack("<q", x)[0] for x in m.aggregate_merge("digits", (data, [8, 16, 24, 32, 40], items))] \
        == [123, 0, 4, 5]
    assert m.aggregate_finish("digits", (data, [8, 16, 24, 32, 40], [2, 5])).ints == [12, 345]
    # Not uniform (a pane of the wrong size): the per-pane path names it.
    with pytest.raises(GuestError, match="Digits is 8 bytes packed, the host gave 16"):
        m.aggregate_finish("digits", (data, [8, 24, 32, 40], [2, 4]))


def test_names_and_texts_become_text_columns_at_utf8_byte_offsets():
    from sluice_guest.module import text_column
    strings = ["mean", "", "é", "日本", "😀x"]
    data, offsets = text_column(strings)
    raw = data.encode()
    assert data == "".join(strings) and offsets[-1] == len(raw)
    assert [raw[a:b].decode() for a, b in zip(offsets, offsets[1:])] == strings
    assert text_column(["ab", "c"]) == ("abc", [0, 2, 3])
    assert text_column([]) == ("", [])  # none: no offsets at all


def test_packed_fields_read_back_per_window_as_dicts():
    from sluice_guest.module import PackedFields

    packed = PackedFields(
        names=["n", "x", "s", "on"], name_ids=[0, 1, 2, 3, 0], kinds=[0, 1, 2, 3, 0],
        ints=[7, 1, 2**60], floats=[0.5], texts=["é"], windows=[4, 4, 5],
    )
    assert packed.fields() == [{"n": 7, "x": 0.5, "s": "é", "on": True}, {}, {"n": 2**60}]
