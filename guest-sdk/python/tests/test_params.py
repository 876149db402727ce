import pytest

from sluice_guest import GuestError, Params, parse_duration_ms


def params(**kv):
    return Params(list(kv.items()))


def test_typed_get_parses_and_defaults():
    p = params(n=" 12 ", x="2.5")
    assert p.get_or("n", 3) == 12
    assert p.get_or("missing", 3) == 3
    assert p.get("x", float) == 2.5
    assert p.get("missing", float) is None


def test_bad_number_names_param_value_and_type():
    with pytest.raises(GuestError) as e:
        params(trend_points="ten").get_or("trend_points", 10)
    assert e.value.message.startswith('param `trend_points` = "ten" is not a valid int')


def test_required_and_duplicate():
    with pytest.raises(GuestError, match="`k` is required but not given"):
        params().require("k", int)
    with pytest.raises(GuestError, match="`a` is given twice"):
        Params([("a", "1"), ("a", "2")])


def test_durations_parse_with_units():
    p = params(a="10m", b="60s", c="250ms", d="2h")
    assert [p.duration_ms_or(n, 0) for n in "abcd"] == [600_000, 60_000, 250, 7_200_000]
    assert p.duration_ms_or("none", 42) == 42


@pytest.mark.parametrize("raw,why", [
    ("600", 'a duration needs a unit: ms, s, m or h (e.g. "10m")'),
    ("10y", "unknown duration unit `y`; use ms, s, m or h"),
    ("-5s", 'a duration starts with a non-negative integer (e.g. "10m")'),
    ("99999999999999999h", "the duration is too large"),
])
def test_bad_durations_give_the_rust_sdks_messages(raw, why):
    with pytest.raises(GuestError) as e:
        params(d=raw).duration_ms_or("d", 0)
    assert e.value.message == f'param `d` = "{raw}": {why}'
    with pytest.raises(ValueError):
        parse_duration_ms(raw)
