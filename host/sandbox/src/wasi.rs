//! The deterministic, capability-free WASI a std Rust guest imports anyway:
//! empty args and environment, empty stdin, stdout/stderr into the tenant's
//! log, clocks pinned to the event time being processed, and random values
//! derived from what is being processed. Same input, same values — which is
//! what makes a replay after a crash give the same answers.
//!
//! Nothing here blocks: a guest's sleep or timeout (`subscribe-duration`,
//! `subscribe-instant` of the monotonic clock, which `std::thread::sleep`
//! and every WASI `poll` with a timeout use) is refused at once — the call
//! fails as a limit ([`WaitRefused`]) — because a host thread blocked in a
//! WASI call cannot be interrupted by the epoch deadline, and the pinned
//! clock would never reach the instant anyway. Zero-length waits (and
//! instants already reached) are ready at once. stdin is empty and closed,
//! stdout/stderr are always ready, so no pollable can block `poll`.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

use super::log::TenantLog;

/// The instant the guest sees as "now", in ms since the Unix epoch. The host
/// moves it before each call (event time of the batch, end of the window).
#[derive(Debug, Clone, Default)]
pub struct PinnedClock(Arc<AtomicI64>);

impl PinnedClock {
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl HostWallClock for PinnedClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.get()).unwrap_or(0))
    }
}

impl HostMonotonicClock for PinnedClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }

    fn now(&self) -> u64 {
        u64::try_from(self.get())
            .unwrap_or(0)
            .saturating_mul(1_000_000)
    }
}

/// Why a guest's call ended: it asked to wait this long. Classified as
/// [`super::Limit::Wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WaitRefused(pub Duration);

impl std::fmt::Display for WaitRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the guest tried to wait {:?}; guest calls may not sleep or wait",
            self.0
        )
    }
}

impl std::error::Error for WaitRefused {}

/// The monotonic clock as a guest sees it: the pinned instant, and no
/// waiting (replaces wasmtime-wasi's, whose pollables sleep on a timer).
pub(crate) struct NoWaitClock<'a> {
    pub clock: &'a PinnedClock,
    pub table: &'a mut ResourceTable,
}

/// [`HasData`] for linking [`NoWaitClock`].
pub(crate) struct NoWait;

impl HasData for NoWait {
    type Data<'a> = NoWaitClock<'a>;
}

/// A pollable that is ready at once.
struct Ready;

#[wasmtime_wasi::async_trait]
impl Pollable for Ready {
    async fn ready(&mut self) {}
}

impl NoWaitClock<'_> {
    /// Ready at once for a zero wait; any other wait ends the call.
    fn wait(&mut self, nanos: u64) -> wasmtime::Result<Resource<DynPollable>> {
        if nanos > 0 {
            return Err(wasmtime::Error::new(WaitRefused(Duration::from_nanos(
                nanos,
            ))));
        }
        let ready = self.table.push(Ready)?;
        wasmtime_wasi::p2::subscribe(self.table, ready)
    }
}

impl monotonic_clock::Host for NoWaitClock<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Ok(HostMonotonicClock::now(self.clock))
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        Ok(HostMonotonicClock::resolution(self.clock))
    }

    fn subscribe_instant(
        &mut self,
        when: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let now = HostMonotonicClock::now(self.clock);
        self.wait(when.saturating_sub(now))
    }

    fn subscribe_duration(
        &mut self,
        duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.wait(duration)
    }
}

/// A splitmix64 stream whose position the host resets before each call from
/// a hash of (tenant, function, first key, event time), so the guest's
/// "random" values are a pure function of its input.
#[derive(Debug, Clone, Default)]
pub struct SeededRandom(Arc<AtomicU64>);

impl SeededRandom {
    pub fn reseed(&self, seed: u64) {
        self.0.store(seed, Ordering::Relaxed);
    }

    fn next(&self) -> u64 {
        // splitmix64: the state advances by a constant, output is mixed.
        let mut z = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl rand_core::TryRng for SeededRandom {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.next() as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.next())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

/// Builds the WASI context of one instance: no preopened directories, no
/// network, nothing inherited from the host process.
pub(crate) fn deterministic_ctx(
    log: &TenantLog,
    clock: &PinnedClock,
    random: &SeededRandom,
    fixed_seed: u128,
) -> WasiCtx {
    WasiCtxBuilder::new()
        .stdout(LogStream(log.clone()))
        .stderr(LogStream(log.clone()))
        .wall_clock(clock.clone())
        .monotonic_clock(clock.clone())
        .secure_random(random.clone())
        .insecure_random(random.clone())
        .insecure_random_seed(fixed_seed)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .build()
}

/// stdout/stderr of a guest: every write goes to the tenant's log.
#[derive(Clone)]
struct LogStream(TenantLog);

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.stdio(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LogStream {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.0.stdio(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::Rng;

    #[test]
    fn seeded_random_repeats_after_reseed() {
        let mut rng = SeededRandom::default();
        rng.reseed(42);
        let first: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
        rng.reseed(42);
        let again: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
        assert_eq!(first, again);
        rng.reseed(43);
        assert_ne!(first[0], rng.next_u64());
    }

    #[test]
    fn pinned_clock_reports_the_set_instant() {
        let clock = PinnedClock::default();
        clock.set(1_487_442_485_000);
        assert_eq!(
            HostWallClock::now(&clock),
            Duration::from_millis(1_487_442_485_000)
        );
        assert_eq!(HostMonotonicClock::now(&clock), 1_487_442_485_000_000_000);
    }
}
