//! Batch jobs against a real node: the scan of stored raw events
//! (`cassandra::events_scan`) gives back exactly the rows the stream stored
//! for a range and scope, as CSV the parser reads to the same values, and
//! fails loudly when the node goes away; `BatchResultStore` round-trips
//! results, overwrites a rerun and records runs.
//!
//! Each test has its own keyspace and tenant names of its own.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scylla::client::session::Session;
use sluice_host::batch::{BatchResult, JobRange};
use sluice_host::cassandra::batch_results::{BatchResultStore, BatchRun};
use sluice_host::cassandra::events_scan::{self, EventScan, ScanHandle};
use sluice_host::cassandra::{self, CassandraConfig, CassandraSink};
use sluice_host::data::{DataField, FieldType, Value};
use sluice_host::ingress::Input;
use sluice_host::manifest::{ColumnSpec, InputFormat, InputSpec, Manifest};
use sluice_host::parse::{OwnedValue, RowParser};
use sluice_host::sink::{Event, EventBatch, OwnedWindow, Rendered, RowPos};

use crate::common::{self, bts_manifest, gen_bts, keyspace, node};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A tenant name no other test (or earlier run) uses.
fn tenant(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{test}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The BTS manifest with the tenant renamed.
fn manifest_for(dir: &Path, tenant: &str) -> PathBuf {
    let path = bts_manifest(dir, "");
    let text = std::fs::read_to_string(&path).expect("reading the manifest");
    let renamed = text.replacen("tenant = \"bts\"", &format!("tenant = {tenant:?}"), 1);
    assert_ne!(renamed, text, "the fixture manifest names its tenant");
    let out = dir.join(format!("{tenant}.toml"));
    std::fs::write(&out, renamed).expect("writing the manifest");
    out
}

/// ms since the epoch of a `YYYY-MM-DD HH:MM:SS UTC` time.
fn ms(text: &str) -> i64 {
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S UTC")
        .expect("a BTS time")
        .and_utc()
        .timestamp_millis()
}

/// The partitions (key, UTC day) the good rows of `path` fill on the
/// days `range` meets.
fn partitions(parser: &mut RowParser, path: &Path, range: JobRange) -> u64 {
    let day = |t: i64| t.div_euclid(86_400_000);
    let text = std::fs::read(path).expect("reading the input");
    let parts: std::collections::BTreeSet<(String, i64)> = parser
        .parse_message(&text, "source")
        .filter_map(Result::ok)
        .filter(|row| (day(range.from)..=day(range.to - 1)).contains(&day(row.time)))
        .map(|row| (row.key.as_joined().to_owned(), day(row.time)))
        .collect();
    parts.len() as u64
}

/// A session on the test node (or `addr`).
fn session(rt: &tokio::runtime::Runtime, addr: &str) -> Arc<Session> {
    Arc::new(
        rt.block_on(cassandra::connect(&[addr.to_owned()]))
            .expect("connecting"),
    )
}

/// The scan over `spec`'s columns.
fn scan_of(ks: &str, tenant: &str, spec: &InputSpec, range: JobRange) -> EventScan {
    EventScan {
        keyspace: ks.to_owned(),
        tenant: tenant.to_owned(),
        range,
        scope: Vec::new(),
        columns: spec.columns.clone(),
        delimiter: spec.delimiter,
        parallelism: 3,
    }
}

/// Runs a scan to its end; its bytes and counters, or the reader's error.
fn scan(
    rt: &tokio::runtime::Runtime,
    session: &Arc<Session>,
    scan: EventScan,
) -> (std::io::Result<Vec<u8>>, ScanHandle, u64) {
    let bar = indicatif::ProgressBar::hidden();
    let (input, handle) = events_scan::start(
        Arc::clone(session),
        rt.handle().clone(),
        scan,
        Some(bar.clone()),
    )
    .expect("starting the scan");
    let Input::Bytes { mut reader, .. } = input else {
        panic!("a scan is a byte stream");
    };
    let mut bytes = Vec::new();
    let read = reader.read_to_end(&mut bytes).map(|_| bytes);
    (read, handle, bar.position())
}

/// Rows as the parser reads them, one canonical line each, sorted (a
/// multiset); panics on a bad row.
fn parsed(parser: &mut RowParser, text: &[u8], what: &str) -> Vec<String> {
    let mut rows: Vec<String> = parser
        .parse_message(text, what)
        .map(|row| {
            let row = row.unwrap_or_else(|bad| panic!("{what}: a bad row: {bad}"));
            format!("{:?}|{}|{:?}", row.key.as_joined(), row.time, row.values)
        })
        .collect();
    rows.sort();
    rows
}

/// The good rows of a source file with `keep(time, values)`, canonical.
fn expected(
    parser: &mut RowParser,
    path: &Path,
    keep: impl Fn(i64, &[OwnedValue]) -> bool,
) -> Vec<String> {
    let text = std::fs::read(path).expect("reading the input");
    let mut rows: Vec<String> = parser
        .parse_message(&text, "source")
        .filter_map(Result::ok)
        .filter(|row| keep(row.time, &row.values))
        .map(|row| format!("{:?}|{}|{:?}", row.key.as_joined(), row.time, row.values))
        .collect();
    rows.sort();
    rows
}

/// Two BTS tenants stored by `sluice run --cassandra` in one keyspace
/// (the second over part of the same data: the same keys and days), the
/// events crossing midnight.
struct Stored {
    _dir: tempfile::TempDir,
    ks: String,
    tenant: String,
    spec: InputSpec,
    input: PathBuf,
}

fn stored(test: &str) -> Stored {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = gen_bts(
        dir.path(),
        "in.csv",
        &[
            "--events",
            "12000",
            "--start",
            "2017-02-18 23:30:00",
            "--dirty",
            "0.02",
            "--out-of-order",
            "0.05",
        ],
    );
    let ks = keyspace(test);
    let ours = tenant(test);
    let manifest = manifest_for(dir.path(), &ours);
    common::run(&manifest, &input, &ks, "ours", &["--workers", "2"]);
    let other = tenant(&format!("{test}-other"));
    let text = std::fs::read_to_string(&input).expect("reading");
    let part: String = text.lines().take(4000).map(|l| format!("{l}\n")).collect();
    let other_input = dir.path().join("other.csv");
    std::fs::write(&other_input, part).expect("writing");
    common::run(
        &manifest_for(dir.path(), &other),
        &other_input,
        &ks,
        "other",
        &[],
    );
    let spec = Manifest::from_path(&manifest).expect("the manifest").input;
    Stored {
        _dir: dir,
        ks,
        tenant: ours,
        spec,
        input,
    }
}

#[test]
fn a_scan_of_a_range_is_exactly_the_stored_rows_of_that_range() {
    let _node = common::shared();
    let data = stored("scan");
    let rt = runtime();
    let session = session(&rt, &node());
    let mut parser = RowParser::new(&data.spec).expect("parser");
    // Across midnight: the end of one day's partitions, the start of the
    // next day's.
    let range = JobRange {
        from: ms("2017-02-18 23:45:00 UTC"),
        to: ms("2017-02-19 00:15:00 UTC"),
    };
    let want = expected(&mut parser, &data.input, |t, _| {
        (range.from..range.to).contains(&t)
    });
    assert!(want.len() > 3000, "{} rows in range", want.len());

    let (bytes, handle, bar) = scan(
        &rt,
        &session,
        scan_of(&data.ks, &data.tenant, &data.spec, range),
    );
    let bytes = bytes.expect("the scan ends cleanly");
    let got = parsed(&mut parser, &bytes, "scan");
    common::assert_same_rows("the scanned rows", &got, &want);
    let stats = handle.stats();
    assert_eq!(stats.rows, want.len() as u64);
    assert_eq!(stats.filtered, 0);
    // Every key of both days, the rows outside the range included.
    assert_eq!(
        stats.partitions,
        partitions(&mut parser, &data.input, range),
        "{stats:?}"
    );
    assert!(stats.partitions > 100, "two days of 60 keys: {stats:?}");
    assert_eq!(bar, stats.partitions);
    assert!(stats.listed > stats.partitions, "the other tenant's too");
    // No header, one line per row, `\n` terminated.
    assert_eq!(
        bytes.iter().filter(|&&b| b == b'\n').count(),
        want.len(),
        "one line per event"
    );

    // The whole of the stored data: every good row of the file.
    let all = JobRange {
        from: ms("2017-02-18 00:00:00 UTC"),
        to: ms("2017-02-20 00:00:00 UTC"),
    };
    let (bytes, _, _) = scan(
        &rt,
        &session,
        EventScan {
            parallelism: 1,
            ..scan_of(&data.ks, &data.tenant, &data.spec, all)
        },
    );
    let got = parsed(&mut parser, &bytes.expect("the scan ends"), "scan");
    let want = expected(&mut parser, &data.input, |_, _| true);
    common::assert_same_rows("every stored row", &got, &want);
    common::drop_keyspace(&data.ks);
}

#[test]
fn scope_on_key_and_non_key_columns_keeps_exactly_the_matching_rows() {
    let _node = common::shared();
    let data = stored("scope");
    let rt = runtime();
    let session = session(&rt, &node());
    let mut parser = RowParser::new(&data.spec).expect("parser");
    let range = JobRange {
        from: ms("2017-02-18 23:30:00 UTC"),
        to: ms("2017-02-19 00:40:00 UTC"),
    };
    let column = |name: &str| data.spec.column_index(name).expect("a column");
    let (station, active, threshold) = (
        column("station_id"),
        column("isActive"),
        column("valueThreshold"),
    );
    let text = |v: &OwnedValue| match v {
        OwnedValue::Text(t) => t.to_string(),
        other => panic!("not text: {other:?}"),
    };
    // A station with readings of threshold 80 (not every station has).
    let first_station = {
        let text_of_file = std::fs::read_to_string(&data.input).expect("reading");
        text_of_file
            .lines()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f.len() > 5 && f[5] == "80" && !f[0].is_empty())
            .map(|f| f[0].to_owned())
            .expect("a station with threshold 80")
    };

    for (scope, keep) in [
        (
            vec![("station_id", first_station.as_str())],
            Box::new(|v: &[OwnedValue]| text(&v[station]) == first_station)
                as Box<dyn Fn(&[OwnedValue]) -> bool>,
        ),
        (
            vec![("isActive", "true")],
            Box::new(|v: &[OwnedValue]| v[active] == OwnedValue::Bool(true)),
        ),
        (
            // A float column, the value spelt as the CSV spells it; and a
            // key column together with a non-key one.
            vec![
                ("valueThreshold", "80"),
                ("station_id", first_station.as_str()),
            ],
            Box::new(|v: &[OwnedValue]| {
                v[threshold] == OwnedValue::Float(80.0) && text(&v[station]) == first_station
            }),
        ),
    ] {
        let want = expected(&mut parser, &data.input, |t, v| {
            (range.from..range.to).contains(&t) && keep(v)
        });
        assert!(!want.is_empty(), "{scope:?} selects rows");
        let (bytes, handle, _) = scan(
            &rt,
            &session,
            EventScan {
                scope: scope
                    .iter()
                    .map(|(c, v)| ((*c).to_owned(), (*v).to_owned()))
                    .collect(),
                ..scan_of(&data.ks, &data.tenant, &data.spec, range)
            },
        );
        let got = parsed(&mut parser, &bytes.expect("the scan ends"), "scan");
        common::assert_same_rows(&format!("scope {scope:?}"), &got, &want);
        let stats = handle.stats();
        if scope.iter().any(|(c, _)| *c == "station_id") {
            // The key scope leaves the other stations' partitions unread.
            let all = partitions(&mut parser, &data.input, range);
            assert!(stats.partitions < all / 2, "{scope:?}: {stats:?}");
        }
        if scope.iter().any(|(c, _)| *c != "station_id") {
            assert!(stats.filtered > 0, "{scope:?}: {stats:?}");
        }
    }

    // A scope the schema cannot hold is refused before anything runs.
    for (scope, message) in [
        (("nope", "1"), "scope column `nope` is not a column"),
        (("value", "high"), "not a finite float"),
    ] {
        let err = events_scan::start(
            Arc::clone(&session),
            rt.handle().clone(),
            EventScan {
                scope: vec![(scope.0.to_owned(), scope.1.to_owned())],
                ..scan_of(&data.ks, &data.tenant, &data.spec, range)
            },
            None,
        )
        .err()
        .expect("refused");
        assert!(err.to_string().contains(message), "{err}");
    }
    common::drop_keyspace(&data.ks);
}

#[test]
fn an_empty_range_ends_at_once_with_no_lines() {
    let _node = common::shared();
    let data = stored("empty");
    let rt = runtime();
    let session = session(&rt, &node());
    let mut parser = RowParser::new(&data.spec).expect("parser");
    for (range, read) in [
        // No day with events.
        (
            JobRange {
                from: ms("2030-01-01 00:00:00 UTC"),
                to: ms("2030-01-02 00:00:00 UTC"),
            },
            Some(0),
        ),
        // The right day, before the first event: partitions read, no rows.
        (
            JobRange {
                from: ms("2017-02-18 22:00:00 UTC"),
                to: ms("2017-02-18 23:00:00 UTC"),
            },
            None,
        ),
        // Nothing at all.
        (
            JobRange {
                from: ms("2017-02-18 23:40:00 UTC"),
                to: ms("2017-02-18 23:40:00 UTC"),
            },
            Some(0),
        ),
    ] {
        let (bytes, handle, _) = scan(
            &rt,
            &session,
            scan_of(&data.ks, &data.tenant, &data.spec, range),
        );
        assert_eq!(bytes.expect("a clean end"), Vec::<u8>::new(), "{range:?}");
        let stats = handle.stats();
        assert_eq!(stats.rows, 0);
        match read {
            Some(n) => assert_eq!(stats.partitions, n, "{range:?}"),
            None => {
                let day = partitions(&mut parser, &data.input, range);
                assert!(day > 0);
                assert_eq!(stats.partitions, day, "{range:?}: the day's");
            }
        }
    }
    let err = events_scan::start(
        Arc::clone(&session),
        rt.handle().clone(),
        scan_of(
            &data.ks,
            &data.tenant,
            &data.spec,
            JobRange { from: 10, to: 5 },
        ),
        None,
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("ends before it starts"), "{err}");
    common::drop_keyspace(&data.ks);
}

/// The typed columns of the round-trip test: every type, a `;` delimiter,
/// two timestamp formats, optional columns.
fn typed_spec() -> InputSpec {
    let column = |name: &str, ty, format: Option<&str>, optional| ColumnSpec {
        name: name.to_owned(),
        ty,
        format: format.map(str::to_owned),
        optional,
    };
    InputSpec {
        queue: "q".into(),
        format: InputFormat::Csv,
        header: false,
        delimiter: b';',
        columns: vec![
            column("site", FieldType::Text, None, false),
            column("unit", FieldType::Int, None, false),
            column(
                "at",
                FieldType::Timestamp,
                Some("%Y-%m-%dT%H:%M:%S%.3fZ"),
                false,
            ),
            column("reading", FieldType::Float, None, false),
            column("note", FieldType::Text, None, true),
            column("ok", FieldType::Boolean, None, false),
            column("seen", FieldType::Timestamp, Some("%d/%m/%Y %H:%M"), true),
            column("count", FieldType::Int, None, true),
        ],
        key: vec!["site".into(), "unit".into()],
        event_time: "at".into(),
        max_out_of_orderness: Duration::ZERO,
        allowed_lateness: Duration::ZERO,
        idle_timeout: None,
        max_future: None,
        partitions: None,
    }
}

const TYPED_LINES: &str = "\
north;1;2017-02-18T23:59:59.999Z;0.1;plain;true;18/02/2017 18:28;7
north;1;2017-02-19T00:00:00.000Z;1e-7;\"semi;colon\";TRUE;;-3
north;-2;2017-02-18T12:00:00.001Z;-0.0;\"quote \"\" inside, and comma\";False;01/01/1970 00:00;
\"so;uth\";3;2017-02-18T12:00:00.002Z;123456789.123456789;  spaced  ;false;;0
süd;3;2017-02-18T12:00:00.003Z;1.7976931348623157e308;ünïcødé ✓;true;31/12/2099 23:59;9223372036854775807
süd;3;2017-02-18T12:00:00.003Z;-2.5e-300;;true;;-9223372036854775808
süd;3;2017-02-18T12:00:00.004Z;5;a\u{1f}b;false;;
";

#[test]
fn every_type_reads_back_exactly_the_stored_value() {
    let _node = common::shared();
    let rt = runtime();
    let ks = keyspace("scantypes");
    let tenant = tenant("types");
    let spec = typed_spec();
    let mut parser = RowParser::new(&spec).expect("parser");
    let rows: Vec<_> = parser
        .parse_message(TYPED_LINES.as_bytes(), "typed.csv")
        .map(|r| r.unwrap_or_else(|bad| panic!("the fixture has a bad row: {bad}")))
        .collect();
    assert_eq!(rows.len(), TYPED_LINES.lines().count());

    // Stored the way the stream stores them: the sink's raw events.
    let sink = rt
        .block_on(CassandraSink::connect(
            CassandraConfig {
                keyspace: ks.clone(),
                ..CassandraConfig::new(vec![node()])
            },
            rt.handle().clone(),
        ))
        .expect("the sink");
    let source: Arc<str> = Arc::from("typed.csv");
    let positions: Vec<RowPos> = (1..=rows.len() as u64)
        .map(|line| RowPos {
            source: Arc::clone(&source),
            line,
            offset: line * 100,
        })
        .collect();
    let events: Vec<Event<'_>> = rows
        .iter()
        .zip(&positions)
        .map(|(row, position)| Event {
            key: &row.key,
            time: row.time,
            values: &row.values,
            position,
        })
        .collect();
    let names: Vec<String> = spec.columns.iter().map(|c| c.name.clone()).collect();
    rt.block_on(sink.write_async(
        &Rendered::default(),
        &Rendered::default(),
        &EventBatch {
            tenant: &tenant,
            key_names: &spec.key,
            columns: &names,
            events: &events,
        },
    ))
    .expect("storing the events");

    let session = Arc::clone(sink.session());
    let (bytes, handle, _) = scan(
        &rt,
        &session,
        scan_of(
            &ks,
            &tenant,
            &spec,
            JobRange {
                from: 0,
                to: i64::MAX,
            },
        ),
    );
    let bytes = bytes.expect("the scan ends");
    let got = parsed(&mut parser, &bytes, "scan");
    let mut want: Vec<String> = rows
        .iter()
        .map(|row| format!("{:?}|{}|{:?}", row.key.as_joined(), row.time, row.values))
        .collect();
    want.sort();
    assert_eq!(got, want, "scanned:\n{}", String::from_utf8_lossy(&bytes));
    assert_eq!(handle.stats().rows, rows.len() as u64);
    // -0.0 == 0.0 for `==`: its sign must survive too.
    assert!(
        String::from_utf8_lossy(&bytes).contains(";-0;"),
        "{}",
        String::from_utf8_lossy(&bytes)
    );

    // The event-time boundaries: from inclusive, to exclusive, across the
    // day boundary (the 23:59:59.999 and 00:00:00.000 events).
    let (bytes, _, _) = scan(
        &rt,
        &session,
        EventScan {
            scope: vec![("site".into(), "north".into()), ("unit".into(), "1".into())],
            ..scan_of(
                &ks,
                &tenant,
                &spec,
                JobRange {
                    from: rows[0].time,
                    to: rows[1].time,
                },
            )
        },
    );
    let got = parsed(&mut parser, &bytes.expect("the scan ends"), "scan");
    assert_eq!(
        got,
        [format!(
            "{:?}|{}|{:?}",
            rows[0].key.as_joined(),
            rows[0].time,
            rows[0].values
        )]
    );

    // A manifest format coarser than the stored times fails the scan with
    // the column named, instead of shifting events.
    let mut coarse = spec.clone();
    coarse.columns[2].format = Some("%Y-%m-%d %H:%M:%S".into());
    let (result, _, _) = scan(
        &rt,
        &session,
        scan_of(
            &ks,
            &tenant,
            &coarse,
            JobRange {
                from: 0,
                to: i64::MAX,
            },
        ),
    );
    let err = result.expect_err("the milliseconds do not fit the format");
    assert!(
        err.to_string().contains("column `at`") && err.to_string().contains("coarser"),
        "{err}"
    );
    common::drop_keyspace(&ks);
}

/// A TCP relay to the node that can be cut: everything through it fails
/// at once, as if the node had gone away.
struct Relay {
    addr: String,
    stop: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the relay");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("address").to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let streams = Arc::new(Mutex::new(Vec::new()));
        {
            let stop = Arc::clone(&stop);
            let streams = Arc::clone(&streams);
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let _ = client.set_nonblocking(false);
                            let Ok(server) = TcpStream::connect(&target) else {
                                continue;
                            };
                            let pipe = |mut from: TcpStream, mut to: TcpStream| {
                                std::thread::spawn(move || {
                                    let _ = std::io::copy(&mut from, &mut to);
                                    let _ = to.shutdown(Shutdown::Both);
                                });
                            };
                            let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                                continue;
                            };
                            if let Ok(mut all) = streams.lock() {
                                all.extend(client.try_clone().ok());
                                all.extend(server.try_clone().ok());
                            }
                            pipe(client, server);
                            pipe(s2, c2);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
                // The listener is dropped: new connections are refused.
            });
        }
        Relay {
            addr,
            stop,
            streams,
        }
    }

    /// Refuses new connections and breaks every open one.
    fn cut(&self) {
        self.stop.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        if let Ok(all) = self.streams.lock() {
            for s in all.iter() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

#[test]
fn a_node_that_goes_away_mid_scan_fails_the_reader_with_a_clear_error() {
    let _node = common::shared();
    let data = stored("unreachable");
    let rt = runtime();
    let relay = Relay::start(node());
    let session = session(&rt, &relay.addr);
    let mut parser = RowParser::new(&data.spec).expect("parser");
    let all = expected(&mut parser, &data.input, |_, _| true).len();
    let (input, handle) = events_scan::start(
        Arc::clone(&session),
        rt.handle().clone(),
        EventScan {
            parallelism: 1,
            ..scan_of(
                &data.ks,
                &data.tenant,
                &data.spec,
                JobRange {
                    from: 0,
                    to: i64::MAX,
                },
            )
        },
        None,
    )
    .expect("starting");
    let Input::Bytes { reader, .. } = input else {
        panic!("a byte stream");
    };
    let mut reader = std::io::BufReader::new(reader);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line).expect("a first line");
    assert!(!line.is_empty());

    relay.cut();
    let started = Instant::now();
    let mut rest = Vec::new();
    let err = reader
        .read_to_end(&mut rest)
        .expect_err("the scan cannot finish without the node");
    let read = 1 + rest.iter().filter(|&&b| b == b'\n').count();
    assert!(read < all, "{read} of {all} lines, yet the node was gone");
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "scanning the stored events of tenant `{}` in {}.events",
            data.tenant, data.ks
        )),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(120), "{message}");
    // The error stays: a later read does not look like an end.
    let mut more = [0u8; 16];
    assert!(reader.read(&mut more).is_err());
    assert!(handle.stats().rows < all as u64);
    eprintln!(
        "the reader's error after {:.1} s: {message}",
        started.elapsed().as_secs_f64()
    );
    drop(reader);
    drop(session);
    common::drop_keyspace(&data.ks);
}

fn result(
    tenant: &str,
    job: &str,
    range: JobRange,
    window: (&str, i64, i64),
    key: &[(&str, &str)],
    fields: Vec<DataField>,
) -> BatchResult {
    BatchResult {
        tenant: tenant.to_owned(),
        job: job.to_owned(),
        range,
        window: OwnedWindow {
            name: window.0.to_owned(),
            start: window.1,
            end: window.2,
        },
        key_names: key.iter().map(|(n, _)| (*n).to_owned()).collect(),
        key: key.iter().map(|(_, v)| (*v).to_owned()).collect(),
        fields,
    }
}

fn field(name: &str, value: Value) -> DataField {
    DataField {
        name: name.to_owned(),
        value,
    }
}

/// Results sorted the way a comparison needs (the table's own order is
/// by window name, start and key map).
fn sorted(mut results: Vec<BatchResult>) -> Vec<BatchResult> {
    results.sort_by(|a, b| {
        (a.range, &a.window.name, a.window.start, &a.key).cmp(&(
            b.range,
            &b.window.name,
            b.window.start,
            &b.key,
        ))
    });
    results
}

/// Asserts two result sets are equal (as sets, in the order of
/// [`sorted`]); on failure names the counts and the first difference only.
fn assert_same_results(what: &str, got: Vec<BatchResult>, want: Vec<BatchResult>) {
    let (got, want) = (sorted(got), sorted(want));
    if got == want {
        return;
    }
    let first = got
        .iter()
        .zip(&want)
        .position(|(g, w)| g != w)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "{what}: {} results, expected {}; first difference at {first}:\n got {:#?}\nwant {:#?}",
        got.len(),
        want.len(),
        got.get(first),
        want.get(first)
    );
}

fn store(rt: &tokio::runtime::Runtime, ks: &str) -> BatchResultStore {
    rt.block_on(BatchResultStore::connect(
        &CassandraConfig {
            keyspace: ks.to_owned(),
            ..CassandraConfig::new(vec![node()])
        },
        rt.handle().clone(),
    ))
    .expect("the store")
}

#[test]
fn batch_results_round_trip_and_a_rerun_overwrites_them() {
    let _node = common::shared();
    let rt = runtime();
    let ks = keyspace("batchresults");
    let store = store(&rt, &ks);
    let tenant = tenant("results");
    let day = JobRange {
        from: ms("2017-02-18 00:00:00 UTC"),
        to: ms("2017-02-19 00:00:00 UTC"),
    };
    let key = [
        ("station_id", "1161114001"),
        ("datapoint_id", "121"),
        ("alarm_id", "309"),
    ];
    let mut results = vec![
        // Field order mixes the types and is not alphabetical.
        result(
            &tenant,
            "daily",
            day,
            ("range", day.from, day.to),
            &key,
            vec![
                field("zeta", Value::Text("quote \" comma , ünï ✓".into())),
                field("count", Value::Int(-42)),
                field("mean", Value::Float(0.1 + 0.2)),
                field("breached", Value::Boolean(true)),
                field("max", Value::Float(1.7976931348623157e308)),
                field("a_min", Value::Float(-2.5e-300)),
                field("empty", Value::Text(String::new())),
            ],
        ),
        // A keyless (tenant-level) result.
        result(
            &tenant,
            "daily",
            day,
            ("range", day.from, day.to),
            &[],
            vec![field("rows", Value::Int(i64::MAX))],
        ),
    ];
    // Hourly windows for many keys: more rows than one request holds.
    for hour in 0..24 {
        for station in 0..20 {
            let station = format!("st{station:02}");
            let start = day.from + hour * 3_600_000;
            results.push(result(
                &tenant,
                "daily",
                day,
                ("hourly", start, start + 3_600_000),
                &[("station_id", station.as_str())],
                vec![
                    field("h", Value::Int(hour)),
                    field("active", Value::Boolean(hour % 2 == 0)),
                ],
            ));
        }
    }
    store.write(&results).expect("writing");
    let n = results.len() as u64;
    assert_eq!(store.count(&tenant, "daily").expect("count"), n);
    let back = store.read(&tenant, "daily", Some(day)).expect("reading");
    assert_same_results("read back", back.clone(), results.clone());
    // Fields in the order the function returned them, not by type or name.
    let first = back
        .iter()
        .find(|r| r.window.name == "range" && !r.key.is_empty())
        .expect("the keyed result");
    let names: Vec<&str> = first.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["zeta", "count", "mean", "breached", "max", "a_min", "empty"]
    );
    assert_eq!(first.key_names, ["station_id", "datapoint_id", "alarm_id"]);

    // A rerun over the same range: the same rows, overwritten (a changed
    // value wins), none added.
    let mut rerun = results.clone();
    rerun[0].fields[1] = field("count", Value::Int(7));
    store.write(&rerun).expect("rewriting");
    assert_eq!(store.count(&tenant, "daily").expect("count"), n);
    let back = store.read(&tenant, "daily", Some(day)).expect("reading");
    assert_same_results("after the rerun", back, rerun.clone());

    // Another range of the same job is another set of rows.
    let next = JobRange {
        from: day.to,
        to: day.to + 86_400_000,
    };
    let shifted: Vec<BatchResult> = rerun
        .iter()
        .map(|r| BatchResult {
            range: next,
            ..r.clone()
        })
        .collect();
    store.write(&shifted).expect("writing the next range");
    assert_eq!(store.count(&tenant, "daily").expect("count"), 2 * n);
    assert_eq!(store.ranges(&tenant, "daily").expect("ranges"), [day, next]);
    let everything = store.read(&tenant, "daily", None).expect("reading all");
    let mut both = rerun.clone();
    both.extend(shifted);
    assert_same_results("both ranges", everything, both);
    // Other jobs and tenants see none of it.
    assert_eq!(store.count(&tenant, "weekly").expect("count"), 0);
    assert_eq!(store.count("someone-else", "daily").expect("count"), 0);
    assert!(store
        .read(&tenant, "daily", Some(JobRange { from: 0, to: 1 }))
        .expect("reading")
        .is_empty());
    assert_eq!(store.stats().retries, 0);

    // A result whose key values do not match its names is refused whole.
    let mut bad = results[0].clone();
    bad.key.pop();
    let err = store.write(&[bad]).expect_err("refused");
    assert!(err.to_string().contains("key values"), "{err}");
    common::drop_keyspace(&ks);
}

#[test]
fn runs_are_recorded_once_per_job_range_and_scope() {
    let _node = common::shared();
    let rt = runtime();
    let ks = keyspace("batchruns");
    let store = store(&rt, &ks);
    let tenant = tenant("runs");
    let range = JobRange {
        from: ms("2017-02-18 00:00:00 UTC"),
        to: ms("2017-02-19 00:00:00 UTC"),
    };
    let run = BatchRun {
        tenant: tenant.clone(),
        job: "daily".into(),
        range,
        scope: BTreeMap::new(),
        trigger: "cli".into(),
        started_at: ms("2017-02-20 10:00:00 UTC"),
        finished_at: ms("2017-02-20 10:00:07 UTC"),
        rows_in: 123_456,
        results: 480,
    };
    store.record_run(&run).expect("recording");
    // A rerun of the same job, range and scope replaces the record.
    let rerun = BatchRun {
        trigger: "schedule".into(),
        started_at: ms("2017-02-21 10:00:00 UTC"),
        finished_at: ms("2017-02-21 10:00:05 UTC"),
        rows_in: 123_460,
        ..run.clone()
    };
    store.record_run(&rerun).expect("recording");
    assert_eq!(
        store.runs(&tenant, "daily").expect("runs"),
        std::slice::from_ref(&rerun)
    );

    // Another scope, another range: other runs.
    let scoped = BatchRun {
        scope: BTreeMap::from([("station_id".to_owned(), "1161114001".to_owned())]),
        results: 8,
        ..rerun.clone()
    };
    let later = BatchRun {
        range: JobRange {
            from: range.to,
            to: range.to + 86_400_000,
        },
        ..rerun.clone()
    };
    store.record_run(&later).expect("recording");
    store.record_run(&scoped).expect("recording");
    assert_eq!(
        store.runs(&tenant, "daily").expect("runs"),
        [rerun, scoped, later]
    );
    assert!(store.runs(&tenant, "weekly").expect("runs").is_empty());
    common::drop_keyspace(&ks);
}
