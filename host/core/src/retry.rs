//! Backoff between retries of an unreachable broker or database: 100 ms
//! doubling to 5 s. Neutral (no runtime): the broker and database clients
//! sleep for [`Backoff::advance`] on their own runtime.

use std::time::Duration;

/// Exponential backoff: each [`advance`](Backoff::advance) returns the
/// delay to wait now and doubles the next one, up to a cap.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    pub fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    /// The delay the next [`advance`](Backoff::advance) returns.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// The delay to wait now; the next one is twice as long (capped).
    pub fn advance(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        now
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let mut b = Backoff::new();
        let seen: Vec<Duration> = (0..9).map(|_| b.advance()).collect();
        assert_eq!(seen[0], Duration::from_millis(100));
        assert_eq!(seen[1], Duration::from_millis(200));
        assert_eq!(*seen.last().expect("non-empty"), Duration::from_secs(5));
        assert_eq!(b.peek(), Duration::from_secs(5));
        b.reset();
        assert_eq!(b.peek(), Duration::from_millis(100));
    }
}
