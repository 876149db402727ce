//! The charts a batch job asks the HTML report to draw: declared in the
//! manifest (`[[batch.charts]]`), drawn by the report from the job's
//! results.

/// How the HTML report draws one window of a job (`[[batch.charts]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartSpec {
    /// The job window whose results the chart shows.
    pub window: String,
    pub kind: ChartKind,
    /// The output field drawn (`bars`, `series`); ignored by `histogram`
    /// and `profile`, which read their own fields.
    pub field: Option<String>,
    pub title: String,
    /// Unit of the drawn values (axis label).
    pub unit: String,
}

/// Chart shapes of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartKind {
    /// One bar per key: `field` summed over the key's windows; the largest
    /// is highlighted (e.g. records per station, breaches per alarm type).
    Bars,
    /// `field` over time: x = window start, one line per key (e.g. active
    /// alarms per station per day).
    Series,
    /// Per key, the counts of fields named `bin:<lower edge>` summed over
    /// its windows, bars `bin_width` wide (an int or float field).
    Histogram,
    /// Per key, the counts of fields `h00`…`h23` (UTC hour of day) summed
    /// over its windows; the peak hour is highlighted.
    Profile,
}
