"""Values of every type arrive as native Python objects equal to what the server's
`::text` (what psql prints) says."""

import datetime as dt
import decimal
import json
import math
import uuid

import pytest

from pg_changestream import StartLocation, enable_change_streaming

from conftest import poll_records

# column type, SQL literals (each a row), and how the Python value reads as the text
COLUMNS = {
    "b": ("bool", ["true", "false"]),
    "i2": ("int2", ["-32768", "32767"]),
    "i4": ("int4", ["-2147483648", "7"]),
    "i8": ("int8", ["-9223372036854775808", "9223372036854775807"]),
    "f4": ("float4", ["1.5", "'NaN'"]),
    "f8": ("float8", ["1e-300", "'-Infinity'"]),
    "n": ("numeric", ["1.50", "'NaN'"]),
    "n2": ("numeric", ["-123456789012345678901234567890.000000000001", "'Infinity'"]),
    "t": ("text", ["'héllo \"x\"'", "''"]),
    "vc": ("varchar(10)", ["'abc'", "NULL"]),
    "by": ("bytea", ["'\\x00ff0a'", "''"]),
    "j": ("json", ["'{\"a\": [1, 2.5, null], \"b\": \"x\"}'", "'[]'"]),
    "jb": ("jsonb", ["'{\"k\": {\"n\": true}}'", "'3'"]),
    "d": ("date", ["'2024-02-29'", "'0044-03-15 BC'"]),
    "d2": ("date", ["'infinity'", "'9999-12-31'"]),
    "tm": ("time", ["'12:34:56.5'", "'24:00:00'"]),
    "ttz": ("timetz", ["'01:02:03+05:30'", "'23:59:59.999999-08'"]),
    "ts": ("timestamp", ["'2024-01-01 12:00:00.123456'", "'-infinity'"]),
    "ts2": ("timestamp", ["'10000-01-01 00:00:00'", "'0001-01-01 00:00:00 BC'"]),
    "tz": ("timestamptz", ["'2024-01-01 03:00:00.5+05:30'", "'infinity'"]),
    "tz2": ("timestamptz", ["'0001-01-01 00:00:00+00'", "'1999-12-31 23:59:59+00 BC'"]),
    "u": ("uuid", ["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "NULL"]),
    "ia": ("int4[]", ["'{1,NULL,3}'", "'{{1,2},{3,4}}'"]),
    "ta": ("text[]", ["'{a,\"b c\",NULL}'", "'{}'"]),
    "ua": ("uuid[]", ["'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'", "NULL"]),
    "iv": ("interval", ["'1 day 02:00:00'", "'-3 mons'"]),
    "inet": ("inet", ["'10.0.0.1/8'", "'::1'"]),
    "mood": ("mood", ["'happy'", "'sad'"]),
}


def as_text(value, pg_type):
    """How PostgreSQL prints `value` (a Python object from the consumer) as `pg_type`."""
    if value is None:
        return None
    if pg_type in ("json", "jsonb"):
        return value  # compared with json.loads of the server's text
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    if isinstance(value, list):  # arrays: compared element-wise below
        return value
    if isinstance(value, dt.datetime):
        text = (f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
                f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}")
        if value.microsecond:
            text += f".{value.microsecond:06d}".rstrip("0")
        if value.tzinfo is not None:
            assert value.tzinfo == dt.timezone.utc
            text += "+00"
        return text
    if isinstance(value, dt.time):
        text = value.strftime("%H:%M:%S.%f").rstrip("0").rstrip(".")
        if value.tzinfo is not None:
            offset = int(value.utcoffset().total_seconds())
            sign = "+" if offset >= 0 else "-"
            h, m = divmod(abs(offset) // 60, 60)
            text += f"{sign}{h:02d}" + (f":{m:02d}" if m else "")
        return text
    if isinstance(value, dt.date):
        return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
    return str(value)


def server_value(text, pg_type):
    """The server's text parsed the way the comparison needs it."""
    if text is None:
        return None
    if pg_type in ("json", "jsonb"):
        return json.loads(text)
    if pg_type in ("float4", "float8") and text not in ("NaN", "Infinity", "-Infinity"):
        return float(text)
    return text


def test_values_of_every_type_match_the_servers_text(db):
    db.sql("CREATE TYPE mood AS ENUM ('happy', 'sad')")
    columns = ", ".join(f"{name} {t}" for name, (t, _) in COLUMNS.items())
    db.sql(f"CREATE TABLE vals (id int PRIMARY KEY, {columns})")
    enable_change_streaming(db.url, "vals")
    consumer = db.builder("values", "vals", location=StartLocation.latest()).build()
    names = list(COLUMNS)
    for row in range(2):
        literals = ", ".join(COLUMNS[n][1][row] for n in names)
        db.sql(f"INSERT INTO vals (id, {', '.join(names)}) VALUES ({row}, {literals})")
    records = poll_records(consumer, 2)
    consumer.close()
    select = ", ".join(names)  # text format: what psql prints
    server = db.sql(f"SET TimeZone = 'UTC'; SET extra_float_digits = 3; "
                    f"SELECT {select} FROM vals ORDER BY id")
    assert len(server) == 2
    for record, texts in zip(records, server):
        value = record.get_current_image().get_value()
        for name, text in zip(names, texts):
            pg_type = COLUMNS[name][0]
            got = value[name]
            if pg_type.endswith("[]"):
                # Arrays: a list of native elements; the server's text reads the same.
                if text is None:
                    assert got is None
                    continue
                expected = {"int4[]": {"{1,NULL,3}": [1, None, 3],
                                       "{{1,2},{3,4}}": [[1, 2], [3, 4]]},
                            "text[]": {'{a,"b c",NULL}': ["a", "b c", None], "{}": []},
                            "uuid[]": {"{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}": [
                                uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")]},
                            }[pg_type][text]
                assert got == expected, (name, got, text)
                continue
            assert as_text(got, pg_type) == server_value(text, pg_type), (name, got, text)


def test_python_types(db):
    db.sql("CREATE TABLE typed (id int PRIMARY KEY, n numeric, tz timestamptz, ts timestamp, "
           "d date, tm time, u uuid, j jsonb, by bytea, bc date, big timestamptz)")
    enable_change_streaming(db.url, "typed")
    consumer = db.builder("types", "typed").build()
    db.sql("INSERT INTO typed VALUES (1, 0.1, '2024-06-01 12:00:00+02', '2024-06-01 12:00:00', "
           "'2024-06-01', '08:00:00.25', gen_random_uuid(), '{\"a\": 1}', 'ab', "
           "'0001-01-01 BC', '12000-01-01 00:00:00+00')")
    (record,) = poll_records(consumer, 1)
    consumer.commit()
    consumer.close()
    v = record.get_current_image().get_value()
    assert v["n"] == decimal.Decimal("0.1") and isinstance(v["n"], decimal.Decimal)
    assert v["tz"] == dt.datetime(2024, 6, 1, 10, tzinfo=dt.timezone.utc)
    assert v["tz"].tzinfo is dt.timezone.utc
    assert record.get_commit_time().tzinfo is dt.timezone.utc
    assert v["ts"] == dt.datetime(2024, 6, 1, 12) and v["ts"].tzinfo is None
    assert v["d"] == dt.date(2024, 6, 1)
    assert v["tm"] == dt.time(8, 0, 0, 250000)
    assert isinstance(v["u"], uuid.UUID)
    assert v["j"] == {"a": 1}
    assert v["by"] == b"ab"
    assert v["bc"] == "0001-01-01 BC"  # not representable: PostgreSQL's text
    assert v["big"] == "12000-01-01 00:00:00+00"
    for special in ("NaN", "Infinity", "-Infinity"):
        db.sql(f"UPDATE typed SET n = '{special}'")
    consumer = db.builder("types", "typed").build()
    got = [r.get_current_image().get_value()["n"] for r in poll_records(consumer, 3)]
    consumer.close()
    assert [str(d) for d in got] == ["NaN", "Infinity", "-Infinity"]
    assert all(isinstance(d, decimal.Decimal) for d in got)


def test_unchanged_toast_values_are_listed_not_null(db):
    db.sql("CREATE TABLE docs (id int PRIMARY KEY, body text, n int)")
    enable_change_streaming(db.url, "docs", before_images=False)
    consumer = db.builder("toast", "docs").build()
    db.sql("INSERT INTO docs SELECT 1, string_agg(md5(i::text), '') FROM generate_series(1, 4000) i")
    db.sql("UPDATE docs SET n = 1")
    insert, update = poll_records(consumer, 2)
    consumer.close()
    assert len(insert.get_current_image().get_value()["body"]) == 128000
    image = update.get_current_image()
    assert "body" not in image.get_value() and image.get_unchanged_columns() == ["body"]


def test_to_dict_converts_a_value_the_change_kept_once(db):
    # An update under REPLICA IDENTITY FULL: the before-image's unchanged columns are the
    # current image's objects (immutable ones only), the key's the current image's; a
    # json dict or array list is never shared, so changing one dict cannot change another.
    db.sql("CREATE TABLE kept (id int PRIMARY KEY, n numeric, tz timestamptz, s text, "
           "j jsonb, a int[], changed int)")
    enable_change_streaming(db.url, "kept", before_images=True)
    consumer = db.builder("kept", "kept").build()
    db.txns("INSERT INTO kept VALUES (1, 1.5, '2024-06-01 12:00:00+00', 'x', '{\"k\": 1}', "
            "'{1,2}', 0)", "UPDATE kept SET changed = 1", "DELETE FROM kept")
    _, update, delete = poll_records(consumer, 3)
    consumer.close()
    row = update.to_dict()
    current, before, key = row["current"], row["before"], row["key"]
    assert current == {"id": 1, "n": decimal.Decimal("1.5"),
                       "tz": dt.datetime(2024, 6, 1, 12, tzinfo=dt.timezone.utc),
                       "s": "x", "j": {"k": 1}, "a": [1, 2], "changed": 1}
    assert before == dict(current, changed=0) and key == {"id": 1}
    for column in ("n", "tz", "s"):
        assert before[column] is current[column], column
    assert key["id"] is current["id"]
    for column in ("j", "a"):
        assert before[column] is not current[column], column
    before["j"]["k"] = 2
    before["a"].append(3)
    assert current["j"] == {"k": 1} and current["a"] == [1, 2]
    # The images as read one by one are the same values.
    assert update.get_current_image().get_value() == current
    assert update.get_before_image().get_value() == dict(current, changed=0)
    gone = delete.to_dict()
    assert gone["current"] is None and gone["key"] == {"id": 1}
    assert gone["key"]["id"] is gone["before"]["id"]
    assert gone["before"] == dict(current, changed=1)


# JSON documents whose Python form is easy to get subtly wrong: (text, jsonb accepts it).
JSON_CORPUS = [
    ('{"a": 1, "b": [1, 2, {"a": null}], "a": 2}', True),  # duplicate key: last value wins
    ("123456789012345678901234567890", True),
    ("-9223372036854775809", True),
    ("9223372036854775807", True),
    ("-9223372036854775808", True),
    ("18446744073709551616", True),
    ("-0", True),
    ("0", True),
    ("[1.5, -0.0, 0.1, 2.5e3, 1E2, 1e-7, 5e+3]", True),
    ("[1e400, -1e400, 1e-400]", False),  # jsonb keeps them exactly; Python: inf, -inf, 0.0
    ("[1.7976931348623157e308, 4.9e-324, 2.2250738585072014e-308]", True),
    ("1.00000000000000011102230246251565404236316680908203125", True),  # a halfway case
    ("[9007199254740993, 9007199254740993.0, 123456789012345678901234567890.5]", True),
    ('"caf\\u00e9 \\ud83d\\ude00 \\n\\t\\"\\\\\\/ \\b\\f\\r \\u00E9"', True),
    ('"\\u0000"', False),
    ('"plain é 日本 \U0001F600"', True),
    ('"\\ud800"', False),  # lone surrogates: json keeps the text, jsonb refuses it
    ('"\\udc00x"', False),
    ('["\\ud83dx", "\\ud83d\\u0041"]', False),
    ('[[[[[[]]]]], {}, {"": ""}, [{}], {"a": {}}]', True),
    (' \n { "k" :\t[ 1 , 2 ] , "ü": "\\u00fc" } \r\n', True),
    ("[" * 300 + "]" * 300, True),  # deeper than the walker goes: json.loads itself
    ("true", True),
    ("false", True),
    ("null", True),
    ('"x"', True),
    ('{"k": [true, false, null, "", 0, -1, 1.0]}', True),
]


def same(a, b):
    """`a == b` that also tells int from float from bool, -0.0 from 0.0, and key order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return repr(a) == repr(b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


def test_json_is_what_json_loads_makes_of_the_servers_text(db):
    db.sql("CREATE TABLE docs (id int PRIMARY KEY, j json, jb jsonb)")
    enable_change_streaming(db.url, "docs")
    consumer = db.builder("json", "docs").build()
    for i, (text, binary) in enumerate(JSON_CORPUS):
        quoted = f"$j${text}$j$"
        db.sql(f"INSERT INTO docs VALUES ({i}, {quoted}, {quoted if binary else 'NULL'})")
    records = poll_records(consumer, len(JSON_CORPUS))
    consumer.close()
    server = db.sql("SELECT j::text, jb::text FROM docs ORDER BY id")
    for record, (text, binary), (j, jb) in zip(records, JSON_CORPUS, server):
        value = record.get_current_image().get_value()
        assert j == text
        assert same(value["j"], json.loads(j)), (text, value["j"])
        if binary:
            assert same(value["jb"], json.loads(jb)), (jb, value["jb"])
        else:
            assert value["jb"] is None
