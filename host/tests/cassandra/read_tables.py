"""Reads sluice's Cassandra tables with the DataStax Python driver (a
standard client, independent of the Rust code under test) and prints JSON.

    read_tables.py HOST PORT KEYSPACE TENANT results   # one result per line
    read_tables.py HOST PORT KEYSPACE TENANT counts    # {"table": rows}
    read_tables.py HOST PORT KEYSPACE TENANT events    # {"k1|k2|k3": rows}
    read_tables.py HOST PORT KEYSPACE TENANT sources   # the distinct sources of the raw events
    read_tables.py HOST PORT KEYSPACE TENANT dead      # one dead letter per line, chunks joined
    read_tables.py HOST PORT KEYSPACE TENANT rows      # every row of every table, every column

`results` rebuilds each stored result in the pipeline's JSON shape from the
typed columns: key in `key_names` order, data in `fields` order, ints as
integers, floats as floats, non-finite floats as null.
"""
import json
import math
import sys

from cassandra.cluster import Cluster

host, port, keyspace, tenant, mode = sys.argv[1:6]
cluster = Cluster([host], port=int(port))
session = cluster.connect(keyspace)


def scan(cql):
    return session.execute(cql + " WHERE tenant = %s ALLOW FILTERING", (tenant,))


def key_of(names, key):
    key = dict(key or {})
    return {n: key[n] for n in (names or []) if n in key}


def data_of(fields, ints, floats, texts, bools):
    maps = [dict(ints or {}), dict(floats or {}), dict(texts or {}), dict(bools or {})]
    out = {}
    for name in fields or []:
        for i, m in enumerate(maps):
            if name in m:
                v = m[name]
                if i == 1:
                    v = float(v) if math.isfinite(v) else None
                out[name] = v
                break
    return out


def results():
    for table, ty in (("windowed_analytics", "Windowed Analytic"), ("global_analytics", "Global Analytic")):
        for r in scan(
            "SELECT tenant, key, key_names, window_name, toUnixTimestamp(window_start) AS ws, "
            "toUnixTimestamp(window_end) AS we, fields, ints, floats, texts, bools, late_update "
            f"FROM {table}"
        ):
            yield row(r, ty)
    for r in scan(
        "SELECT tenant, key, key_names, metric_type, window_name, toUnixTimestamp(window_start) AS ws, "
        "toUnixTimestamp(window_end) AS we, fields, ints, floats, texts, bools, late_update FROM metrics"
    ):
        yield row(r, r.metric_type)
    for r in scan(
        "SELECT tenant, key, key_names, kind, toUnixTimestamp(event_time) AS et, fields, ints, floats, "
        "texts, bools FROM alerts"
    ):
        data = {"kind": r.kind, "event_time": r.et}
        data.update(data_of(r.fields, r.ints, r.floats, r.texts, r.bools))
        yield {"tenant": r.tenant, "type": "Alert", "key": key_of(r.key_names, r.key), "data": data}


def row(r, ty):
    out = {
        "tenant": r.tenant,
        "type": ty,
        "window": {"name": r.window_name, "start": r.ws, "end": r.we},
        "key": key_of(r.key_names, r.key),
        "data": data_of(r.fields, r.ints, r.floats, r.texts, r.bools),
    }
    if r.late_update:
        out["update"] = r.late_update
    return out


if mode == "results":
    for r in results():
        print(json.dumps(r))
elif mode == "counts":
    counts = {}
    for table in ("windowed_analytics", "global_analytics", "metrics", "alerts", "events", "dead_letters"):
        counts[table] = sum(1 for _ in scan(f"SELECT tenant FROM {table}"))
    print(json.dumps(counts))
elif mode == "events":
    counts = {}
    for r in scan("SELECT key, key_names FROM events"):
        k = "|".join(dict(r.key)[n] for n in r.key_names)
        counts[k] = counts.get(k, 0) + 1
    print(json.dumps(counts))
elif mode == "sources":
    for source in sorted({r.source for r in scan("SELECT source FROM events")}):
        print(source)
elif mode == "dead":
    letters = {}
    for r in scan("SELECT id, chunk, chunks, body FROM dead_letters"):
        letters.setdefault(r.id, {"chunks": r.chunks, "parts": {}})["parts"][r.chunk] = r.body
    for id_, d in letters.items():
        parts = d["parts"]
        print(json.dumps({"id": id_, "chunks": d["chunks"], "stored": len(parts),
                          "line": "".join(parts[i] for i in sorted(parts))}))
elif mode == "rows":
    def plain(v):
        """A column value as JSON: collections recursively, maps sorted."""
        if isinstance(v, (str, int, bool)) or v is None:
            return v
        if isinstance(v, float):
            return v if math.isfinite(v) else repr(v)
        if hasattr(v, "items"):
            return sorted([plain(k), plain(x)] for k, x in v.items())
        if isinstance(v, (list, tuple, set, frozenset)):
            return [plain(x) for x in v]
        return str(v)

    for table in ("windowed_analytics", "global_analytics", "metrics", "alerts", "events", "dead_letters"):
        for r in scan(f"SELECT * FROM {table}"):
            print(table, json.dumps({k: plain(v) for k, v in r._asdict().items()}, sort_keys=True))
else:
    sys.exit(f"unknown mode {mode}")
cluster.shutdown()
