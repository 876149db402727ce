//! `sluice publish`: reads CSV lines and publishes them to a tenant's input
//! queue as persistent messages of K lines, with publisher confirms, a
//! `timestamp` and a deterministic `message_id` (`<source>:<first line>`),
//! so re-publishing a file gives the same ids. The queue is declared
//! exactly as the host declares it ([`topology::declare_input`]).
//!
//! A partitioned input (`[input] partitions`) is published to its
//! consistent-hash exchange with the record's key as the routing key
//! ([`topology::partition_routing_key`]), read by the host's own parser so
//! an `int` key written `007` routes as `7` does. A message then carries
//! consecutive lines of one key only (up to K): grouping lines of a key
//! from further on would reorder the input, and a partition's watermark
//! follows the order its records arrive in.

use std::collections::VecDeque;
use std::io::BufRead;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Confirmation, PublisherConfirm};

use crate::topology;
use sluice_core::manifest::InputSpec;
use sluice_core::parse::RowParser;

/// Result of publishing.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Broker(#[from] crate::Error),
    #[error("reading {source_name}: {source}")]
    Read {
        source_name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--lines-per-message must be at least 1")]
    NoLines,
    #[error("the manifest's input: {0}")]
    Parser(String),
}

/// What to publish and how fast.
#[derive(Debug, Clone)]
pub struct PublishConfig {
    pub url: String,
    pub queue: String,
    /// Names the input in message ids (a file name, or `stdin`).
    pub source_name: String,
    /// Rows per second; `None` publishes as fast as confirms allow.
    pub rate: Option<f64>,
    pub lines_per_message: usize,
    /// Unconfirmed messages allowed in flight.
    pub max_in_flight: usize,
    /// Publish to this partitioned input (its schema gives each line's key).
    pub partitioned: Option<(InputSpec, topology::Partitioned)>,
}

/// What was published; `confirmed` counts only what the broker confirmed.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublishSummary {
    pub messages: u64,
    pub rows: u64,
    pub bytes: u64,
    pub nacked: u64,
    pub elapsed: Duration,
    pub interrupted: bool,
}

impl PublishSummary {
    pub fn messages_per_sec(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Publishes every line of `input`; stops early (cleanly, after waiting
/// for the confirms in flight) when `stop` resolves. `on_progress` gets the
/// bytes read so far.
pub async fn publish<R: BufRead>(
    config: &PublishConfig,
    mut input: R,
    stop: impl std::future::Future<Output = ()>,
    mut on_progress: impl FnMut(u64),
) -> Result<PublishSummary> {
    if config.lines_per_message == 0 {
        return Err(Error::NoLines);
    }
    let connection = crate::connect(&config.url, "sluice-publish").await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(crate::Error::amqp("opening a channel"))?;
    let mut router = match &config.partitioned {
        Some((spec, input)) => {
            topology::declare_partitioned_input(&channel, input).await?;
            Some(RowParser::new(spec).map_err(|e| Error::Parser(e.to_string()))?)
        }
        None => {
            topology::declare_input(&channel, &config.queue).await?;
            None
        }
    };
    // The exchange and the routing key of a message: the default exchange
    // and the queue, or the partition exchange and the message's key.
    let exchange = match &config.partitioned {
        Some((_, input)) => input.base.clone(),
        None => String::new(),
    };
    let mut routing_key = config.queue.clone();
    // A line read ahead: the first of the next key's message.
    let mut next_line: Option<(Vec<u8>, String)> = None;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(crate::Error::amqp("enabling publisher confirms"))?;

    let started = Instant::now();
    let mut summary = PublishSummary::default();
    let mut in_flight: VecDeque<(PublisherConfirm, u64, u64)> = VecDeque::new();
    let mut body = Vec::with_capacity(4096);
    let mut line = Vec::with_capacity(256);
    let mut line_no: u64 = 0;
    let mut read_bytes: u64 = 0;
    let mut sent_rows: u64 = 0;
    tokio::pin!(stop);
    'outer: loop {
        body.clear();
        let first = line_no + 1 - u64::from(next_line.is_some());
        let mut rows = 0u64;
        while rows < config.lines_per_message as u64 {
            let key = match next_line.take() {
                Some((held, key)) => {
                    line = held;
                    Some(key)
                }
                None => {
                    line.clear();
                    let n = input
                        .read_until(b'\n', &mut line)
                        .map_err(|source| Error::Read {
                            source_name: config.source_name.clone(),
                            source,
                        })?;
                    if n == 0 {
                        break;
                    }
                    read_bytes += n as u64;
                    line_no += 1;
                    router.as_mut().map(|parser| route(parser, &line, line_no))
                }
            };
            if let Some(key) = key {
                if rows == 0 {
                    routing_key = key;
                } else if key != routing_key {
                    // Another key: it starts the next message.
                    next_line = Some((std::mem::take(&mut line), key));
                    break;
                }
            }
            rows += 1;
            body.extend_from_slice(&line);
            if !line.ends_with(b"\n") {
                body.push(b'\n');
            }
        }
        if rows == 0 {
            break;
        }
        if let Some(rate) = config.rate.filter(|r| *r > 0.0) {
            let due = started + Duration::from_secs_f64(sent_rows as f64 / rate);
            let now = Instant::now();
            if due > now {
                tokio::select! {
                    () = tokio::time::sleep(due - now) => {}
                    () = &mut stop => { summary.interrupted = true; break 'outer; }
                }
            }
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut headers = FieldTable::default();
        headers.insert(
            topology::TIMESTAMP_MS_HEADER.into(),
            AMQPValue::LongLongInt(i64::try_from(now.as_millis()).unwrap_or(i64::MAX)),
        );
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("text/csv".into())
            .with_timestamp(now.as_secs())
            .with_headers(headers)
            .with_message_id(format!("{}:{first}", config.source_name).into());
        let confirm = channel
            .basic_publish(
                exchange.as_str().into(),
                routing_key.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                props,
            )
            .await
            .map_err(crate::Error::amqp("publishing"))?;
        sent_rows += rows;
        in_flight.push_back((confirm, rows, body.len() as u64));
        while in_flight.len() >= config.max_in_flight.max(1) {
            if let Some(front) = in_flight.pop_front() {
                settle(front, &mut summary, &config.queue).await?;
            }
        }
        on_progress(read_bytes);
        if futures_lite::future::poll_once(&mut stop).await.is_some() {
            summary.interrupted = true;
            break;
        }
    }
    while let Some(front) = in_flight.pop_front() {
        settle(front, &mut summary, &config.queue).await?;
    }
    summary.elapsed = started.elapsed();
    let _ = connection.close(200, "done".into()).await;
    Ok(summary)
}

/// The routing key of one line on a partitioned input: its key as the
/// host's parser reads it, or the empty key when it has none.
fn route(parser: &mut RowParser, line: &[u8], line_no: u64) -> String {
    let key = match parser.parse_record(line, "publish", line_no, 0) {
        Ok(row) => Some(row.key),
        Err(bad) => bad.key,
    };
    key.map_or_else(String::new, |k| topology::partition_routing_key(k.parts()))
}

async fn settle(
    (confirm, rows, bytes): (PublisherConfirm, u64, u64),
    summary: &mut PublishSummary,
    queue: &str,
) -> Result<()> {
    match confirm
        .await
        .map_err(crate::Error::amqp("waiting for a confirm"))?
    {
        Confirmation::Nack(_) => {
            summary.nacked += 1;
            tracing::warn!(queue, "the broker refused a message");
        }
        _ => {
            summary.messages += 1;
            summary.rows += rows;
            summary.bytes += bytes;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::manifest::Manifest;

    fn parser() -> RowParser {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let manifest = Manifest::from_path(&dir.join("../../examples/bts-analytics/sluice.toml"))
            .expect("the example manifest");
        RowParser::new(&manifest.input).expect("parser")
    }

    #[test]
    fn lines_route_by_the_key_the_host_reads() {
        let mut p = parser();
        let good = b"1161115009,121,308,2017-02-18 18:28:06 UTC,240.5,999999,false,\n";
        assert_eq!(route(&mut p, good, 1), "1161115009|121|308");
        // A bad value keeps the row's key: it goes where its key's rows go.
        let bad_value = b"1161115009,121,308,2017-02-18 18:28:06 UTC,FalseData,999999,false\n";
        assert_eq!(route(&mut p, bad_value, 2), "1161115009|121|308");
        // No readable key: the empty routing key, one partition for all.
        assert_eq!(route(&mut p, b",,,,,,,\n", 3), "");
        assert_eq!(route(&mut p, b"\n", 4), "");
    }
}
