use super::coordinator::next_multiple_above;
use super::*;
use crate::data::error::Result as CallResult;

#[test]
fn the_next_boundary_is_strictly_above_the_time_also_for_negative_times() {
    assert_eq!(next_multiple_above(0, 60), 60);
    assert_eq!(next_multiple_above(59, 60), 60);
    assert_eq!(next_multiple_above(60, 60), 120);
    assert_eq!(next_multiple_above(-1, 60), 0);
    assert_eq!(next_multiple_above(-60, 60), 0);
}

#[test]
fn alert_isolation_fails_only_the_poison_group() {
    let items = [1, 2, 66, 4, 5];
    let mut out = Vec::new();
    let mut calls = 0;
    let ok = alerts::isolate_for_tests(5, &mut out, &mut |range| {
        calls += 1;
        let part = &items[range];
        Ok(if part.contains(&66) {
            Err(SandboxError::Trap {
                tenant: "t".into(),
                function: "alerts".into(),
                message: "poison".into(),
            })
        } else {
            Ok(part.iter().map(|x| x * 10).collect())
        })
    });
    assert!(ok);
    let shown: Vec<Option<i32>> = out.iter().map(|r| r.as_ref().ok().copied()).collect();
    assert_eq!(shown, vec![Some(10), Some(20), None, Some(40), Some(50)]);
    assert!(out[2].as_ref().expect_err("poison").contains("poison"));
    assert!(calls <= 7, "{calls} calls");
}

/// A tenant with an alert function that raises nothing and no windows:
/// enough to run the pipeline's threads without a sandbox.
struct QuietAlerts;

impl crate::window::WindowCalls for QuietAlerts {
    fn aggregate_add(
        &mut self,
        _: &str,
        _: &[data::AddGroup<'_>],
        _: &data::EventBatch,
    ) -> CallResult<Vec<Vec<u8>>> {
        Err(SandboxError::Engine("no windows".into()))
    }

    fn aggregate_merge(&mut self, _: &str, _: &[&[&[u8]]], _: i64) -> CallResult<Vec<Vec<u8>>> {
        Err(SandboxError::Engine("no windows".into()))
    }

    fn aggregate_finish(
        &mut self,
        _: &str,
        _: &[&[&[u8]]],
        _: i64,
    ) -> CallResult<Vec<Vec<data::DataField>>> {
        Err(SandboxError::Engine("no windows".into()))
    }

    fn process_window(
        &mut self,
        _: &str,
        _: &[data::WindowGroup],
        _: &data::EventBatch,
    ) -> CallResult<Vec<Vec<data::DataField>>> {
        Err(SandboxError::Engine("no windows".into()))
    }

    fn reads(&self) -> &[u32] {
        &[0, 1, 2]
    }
}

impl AlertCalls for QuietAlerts {
    fn alert(
        &mut self,
        _: &str,
        groups: &[data::KeyGroup],
        _: &data::EventBatch,
    ) -> CallResult<Vec<data::AlertResult>> {
        Ok(groups
            .iter()
            .map(|_| data::AlertResult {
                state: Vec::new(),
                alerts: Vec::new(),
            })
            .collect())
    }
}

/// Hands out one line per read, each after a pause, so the run lasts
/// long enough for progress reports.
struct SlowLines(std::collections::VecDeque<Vec<u8>>);

impl std::io::Read for SlowLines {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(line) = self.0.pop_front() else {
            return Ok(0);
        };
        thread::sleep(Duration::from_millis(100));
        let n = line.len().min(buf.len());
        buf[..n].copy_from_slice(&line[..n]);
        if n < line.len() {
            self.0.push_front(line[n..].to_vec());
        }
        Ok(n)
    }
}

/// What a run told its progress observer, in order.
#[derive(Default)]
struct Told(std::sync::Mutex<Vec<(&'static str, u64)>>);

impl Told {
    fn push(&self, what: &'static str, rows: u64) {
        self.0.lock().expect("not poisoned").push((what, rows));
    }
}

impl crate::metrics::ProgressObserver for Told {
    fn started(&self) {
        self.push("started", 0);
    }

    fn progress(&self, progress: &crate::metrics::Progress) {
        self.push("progress", progress.summary.rows_in);
    }

    fn finished(&self) {
        self.push("finished", 0);
    }
}

#[test]
fn the_progress_observer_hears_the_start_the_figures_and_the_end_of_a_run() {
    let manifest = Manifest::parse(
        r#"tenant = "t"
module = "none.wasm"
[input]
queue = "t.in"
columns = [
  { name = "k", type = "text" },
  { name = "t", type = "timestamp", format = "%Y-%m-%d %H:%M:%S UTC" },
  { name = "v", type = "float" },
]
key = ["k"]
event_time = "t"
max_out_of_orderness = "5s"
[alerts]
function = "alerts"
[output]
exchange = "t.out"
"#,
        std::path::Path::new("t.toml"),
    )
    .expect("a valid manifest");
    let lines = (0..6)
        .map(|i| format!("k{i},2024-01-01 00:00:0{i} UTC,1.5\n").into_bytes())
        .collect();
    let told = Arc::new(Told::default());
    let options = Options {
        workers: 2,
        progress: Some(Arc::clone(&told) as Arc<dyn crate::metrics::ProgressObserver>),
        ..Options::default()
    };
    let sinks = Sinks::lines(
        sink::LineSink::discard("output"),
        sink::LineSink::discard("dead-letter"),
    );
    let input = Input::bytes(Box::new(SlowLines(lines)), "slow");
    let report = run_with(&manifest, input, &sinks, &options, |_| Ok(QuietAlerts))
        .expect("the run succeeds");
    assert_eq!(report.summary.rows_in, 6);
    let told = told.0.lock().expect("not poisoned").clone();
    assert_eq!(told.first(), Some(&("started", 0)), "{told:?}");
    assert_eq!(told.last(), Some(&("finished", 0)), "{told:?}");
    let rows: Vec<u64> = told[1..told.len() - 1]
        .iter()
        .map(|&(what, rows)| {
            assert_eq!(what, "progress", "{told:?}");
            rows
        })
        .collect();
    assert!(!rows.is_empty(), "no progress over 600 ms: {told:?}");
    assert!(rows.windows(2).all(|w| w[0] <= w[1]) && rows.iter().all(|&r| r <= 6));
}
