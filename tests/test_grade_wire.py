"""The data format that carries values between a graded answer and its tests.

Round trips of the values tests compare (floats with nan, inf and -0.0, sets, dicts
with tuple keys, numpy arrays and scalars, DataFrames with their dtypes and indexes),
and what the decoder refuses: references where only data is allowed, unknown tags.
An answer's own types (a float subclass, a dict subclass) come back as plain data.
"""

from __future__ import annotations

import datetime
import decimal
import json
import math

import pytest

from sale.envs._grade_wire import Decoder, Encoder, WireError


def _round_trip(value):
    encoded = Encoder().encode(value)
    return Decoder().decode(json.loads(json.dumps(encoded, allow_nan=False)))


def test_plain_values_round_trip_with_their_types():
    values = [None, True, 3, 2**80, -0.0, 1e308, "täst", b"\x00\xff", bytearray(b"ab"),
              (1, (2, 3)), [1, [2]], {(1, 2): {"a": {3}}}, frozenset({1}), 1 + 2j,
              decimal.Decimal("1.10"), range(1, 9, 2), datetime.date(2020, 1, 2),
              datetime.datetime(2020, 1, 2, 3, 4, 5, 6), datetime.timedelta(days=1, seconds=2),
              Ellipsis]
    for value in values:
        back = _round_trip(value)
        assert back == value and type(back) is type(value), value
    assert math.copysign(1, _round_trip(-0.0)) == -1
    assert math.isnan(_round_trip(float("nan"))) and _round_trip(float("-inf")) == float("-inf")


def test_an_answers_subclasses_come_back_as_plain_data():
    class Liar(float):
        def __eq__(self, other):
            return True

    class LyingDict(dict):
        def __eq__(self, other):
            return True

    back = _round_trip([Liar(1.5), LyingDict(a=1)])
    assert type(back[0]) is float and back[0] == 1.5 and back[0] != 2.0
    assert type(back[1]) is dict and back[1] != {"b": 2}


def test_objects_that_are_not_data_need_a_reference():
    with pytest.raises(WireError, match="cannot be carried as data"):
        Encoder().encode(object())
    refs = []
    encoded = Encoder(ref=lambda obj: refs.append(obj) or {"$": "ref", "id": len(refs)}).encode([object()])
    assert encoded == [{"$": "ref", "id": 1}]
    with pytest.raises(WireError, match="reference"):
        Decoder().decode(encoded)
    with pytest.raises(WireError, match="unknown value tag"):
        Decoder().decode({"$": "pickle", "v": "gASV"})


def test_numpy_values_round_trip():
    np = pytest.importorskip("numpy")
    for value in (np.int32(-7), np.float64("nan"), np.bool_(True), np.datetime64("2021-03-04", "D"),
                  np.complex128(1 - 2j), np.str_("x")):
        back = _round_trip(value)
        assert back.dtype == value.dtype
        assert (back == value) or (np.isnan(back) and np.isnan(value))
    array = np.arange(12, dtype=np.int16).reshape(3, 4)
    back = _round_trip(array)
    assert back.dtype == array.dtype and back.shape == (3, 4) and (back == array).all()
    mixed = np.array([1, "a", None], dtype=object)
    assert list(_round_trip(mixed)) == [1, "a", None]


def test_pandas_values_round_trip_with_dtypes_and_indexes():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({
        "i": [1, 2, 3], "f": [0.5, float("nan"), -0.0], "s": ["a", None, "c"],
        "b": [True, False, True], "cat": pd.Categorical(["x", "y", "x"], categories=["y", "x", "z"]),
        "t": pd.to_datetime(["2020-01-01", None, "2020-01-03"]),
        "n": pd.array([1, None, 3], dtype="Int64"),
    }, index=pd.Index([10, 20, 30], name="key"))
    back = _round_trip(frame)
    pd.testing.assert_frame_equal(back, frame)
    series = pd.Series([1.5, 2.5], index=pd.date_range("2021-01-01", periods=2, freq="D"), name="v")
    pd.testing.assert_series_equal(_round_trip(series), series)
    multi = pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("a", 1), ("a", 2)]))
    pd.testing.assert_frame_equal(_round_trip(multi), multi)
    empty = pd.DataFrame(columns=["a", "b"])
    pd.testing.assert_frame_equal(_round_trip(empty), empty)
    assert _round_trip(pd.Timestamp("2020-05-06 07:08", tz="UTC")) == pd.Timestamp("2020-05-06 07:08", tz="UTC")
    assert _round_trip(pd.NaT) is pd.NaT
