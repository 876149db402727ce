//! The progress line `sluice run` and `sluice batch` draw on stderr: the
//! pipeline reports its figures to a `ProgressObserver`; drawing them is
//! the CLI's concern.

use std::sync::Arc;

use sluice_host::metrics::{Progress, ProgressObserver};

/// The progress line of a pipeline run on stderr, when `show`.
pub fn progress_line(show: bool) -> Option<Arc<dyn ProgressObserver>> {
    show.then(|| Arc::new(ProgressLine::default()) as Arc<dyn ProgressObserver>)
}

/// A pipeline run's figures as a spinner line on stderr, redrawn at most
/// four times a second; a new bar for each run (a `sluice batch` of
/// several jobs runs one pipeline per job), cleared when it ends.
#[derive(Default)]
struct ProgressLine {
    bar: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl ProgressObserver for ProgressLine {
    fn started(&self) {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn progress(&self, progress: &Progress) {
        let Ok(slot) = self.bar.lock() else { return };
        let Some(bar) = slot.as_ref() else { return };
        let s = &progress.summary;
        bar.set_message(format!(
            "{} rows, {} MB, {} bad, {} late, {} outputs, {:.0} events/s, {} panes",
            s.rows_in,
            s.bytes_in / 1_000_000,
            s.bad_rows,
            s.late_dropped,
            s.outputs,
            s.events_per_sec(),
            progress.open_panes
        ));
    }

    fn finished(&self) {
        let bar = self.bar.lock().ok().and_then(|mut slot| slot.take());
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    }
}
