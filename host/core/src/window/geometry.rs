//! Pane arithmetic of time windows, aligned to the Unix epoch as Flink does
//! (`start = t - t.rem_euclid(slide)`).
//!
//! A window `[s, s + size)` starts at a multiple of `slide`; a pane is
//! `[q·pane, (q+1)·pane)` with `pane = gcd(size, slide)`, so every window is
//! a whole number of panes and every pane lies wholly inside or outside a
//! window. Computations run in `i128` and are clamped to `i64`: the first
//! watermark of a stream is `i64::MIN`, and `wm - size` must not overflow.

/// The shape of a tumbling (`slide == size`) or sliding window, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Geometry {
    pub size: i64,
    pub slide: i64,
    pub pane: i64,
}

fn floor_to(x: i128, m: i128) -> i128 {
    x - x.rem_euclid(m)
}

fn ceil_to(x: i128, m: i128) -> i128 {
    -floor_to(-x, m)
}

fn floor_to_i64(x: i64, m: i64) -> Option<i64> {
    x.checked_sub(x.rem_euclid(m))
}

fn ceil_to_i64(x: i64, m: i64) -> Option<i64> {
    match x.rem_euclid(m) {
        0 => Some(x),
        r => x.checked_add(m - r),
    }
}

pub(super) fn clamp(x: i128) -> i64 {
    i64::try_from(x).unwrap_or(if x < 0 { i64::MIN } else { i64::MAX })
}

/// The first multiple of `every` strictly after `t`.
pub(super) fn next_multiple_after(t: i64, every: i64) -> i64 {
    if let Some(next) = floor_to_i64(t, every).and_then(|f| f.checked_add(every)) {
        return next;
    }
    clamp(floor_to(i128::from(t), i128::from(every)) + i128::from(every))
}

impl Geometry {
    /// `size`, `slide` and `pane` must be positive, `pane` dividing both.
    pub fn new(size: i64, slide: i64) -> Geometry {
        Geometry {
            size,
            slide,
            pane: gcd(size, slide),
        }
    }

    /// Index of the pane holding time `t`.
    pub fn pane_of(&self, t: i64) -> i64 {
        t.div_euclid(self.pane)
    }

    /// Start of pane `q`.
    pub fn pane_start(&self, q: i64) -> i128 {
        i128::from(q) * i128::from(self.pane)
    }

    /// Starts of the windows holding pane `q` whose end is in
    /// `(after, upto]`, ascending.
    pub fn starts_ending_in(&self, q: i64, after: i64, upto: i64) -> impl Iterator<Item = i64> {
        let (lo, hi) = self.start_range(q, after, upto);
        let step = usize::try_from(self.slide).unwrap_or(usize::MAX);
        (lo..=hi).step_by(step).map(clamp)
    }

    /// The first and last start of [`Self::starts_ending_in`] (empty when
    /// `lo > hi`); both are multiples of `slide`.
    pub fn start_range(&self, q: i64, after: i64, upto: i64) -> (i128, i128) {
        self.start_range_i64(q, after, upto)
            .unwrap_or_else(|| self.start_range_i128(q, after, upto))
    }

    /// Starts of every window whose end is in `(after, upto]`, if there
    /// are at most `max` of them (one per slide the watermark moved): a
    /// step usually fires one window per key, found with one lookup per
    /// key instead of a pass over its panes.
    pub fn starts_ending_between(&self, after: i64, upto: i64, max: usize) -> Option<Vec<i64>> {
        let (size, slide) = (i128::from(self.size), i128::from(self.slide));
        let lo = ceil_to(i128::from(after) - size + 1, slide);
        let hi = floor_to(i128::from(upto) - size, slide);
        if hi < lo {
            return Some(Vec::new());
        }
        let count = usize::try_from((hi - lo) / slide + 1).ok()?;
        if count > max || hi > i128::from(i64::MAX) || lo < i128::from(i64::MIN) {
            return None;
        }
        Some((0..count).map(|i| clamp(lo + slide * i as i128)).collect())
    }

    /// Starts of the windows holding any of `panes` (ascending pane
    /// indices) whose end is in `(after, upto]`, ascending and each once:
    /// the panes' start ranges ascend with them, so they merge as they
    /// come, with no sort.
    pub fn starts_of_panes(
        &self,
        panes: impl Iterator<Item = i64>,
        after: i64,
        upto: i64,
        mut start: impl FnMut(i64),
    ) {
        let slide = i128::from(self.slide);
        let mut next = i128::MIN;
        for q in panes {
            let (lo, hi) = self.start_range(q, after, upto);
            let mut s = lo.max(next);
            while s <= hi {
                start(clamp(s));
                s += slide;
                next = s;
            }
        }
    }

    /// The window holds the pane iff `s <= p` and `s + size >= p + pane`.
    fn start_range_i128(&self, q: i64, after: i64, upto: i64) -> (i128, i128) {
        let (size, slide) = (i128::from(self.size), i128::from(self.slide));
        let p = self.pane_start(q);
        let lo = ceil_to(p + i128::from(self.pane) - size, slide)
            .max(ceil_to(i128::from(after) - size + 1, slide));
        let hi = floor_to(p, slide).min(floor_to(i128::from(upto) - size, slide));
        (lo, hi)
    }

    /// [`Self::start_range_i128`] without 128-bit division (the hot path:
    /// every firing computes it for every pane of the keys it visits);
    /// `None` when an intermediate value would overflow.
    fn start_range_i64(&self, q: i64, after: i64, upto: i64) -> Option<(i128, i128)> {
        let p = q.checked_mul(self.pane)?;
        let mut lo = ceil_to_i64(
            p.checked_add(self.pane)?.checked_sub(self.size)?,
            self.slide,
        )?;
        if after != i64::MIN {
            lo = lo.max(ceil_to_i64(
                after.checked_sub(self.size)?.checked_add(1)?,
                self.slide,
            )?);
        }
        let mut hi = floor_to_i64(p, self.slide)?;
        if upto != i64::MAX {
            hi = hi.min(floor_to_i64(upto.checked_sub(self.size)?, self.slide)?);
        }
        Some((i128::from(lo), i128::from(hi)))
    }

    /// End of the first window holding pane `q` that ends after `wm`.
    pub fn first_end_after(&self, q: i64, wm: i64) -> Option<i64> {
        self.starts_ending_in(q, wm, i64::MAX)
            .next()
            .map(|s| clamp(i128::from(s) + i128::from(self.size)))
    }

    /// When pane `q` can be freed: the last window holding it can no
    /// longer be updated once `end + lateness <= wm`.
    pub fn expiry(&self, q: i64, lateness: i64) -> i64 {
        let fast = q
            .checked_mul(self.pane)
            .and_then(|p| floor_to_i64(p, self.slide))
            .and_then(|s| s.checked_add(self.size)?.checked_add(lateness));
        if let Some(at) = fast {
            return at;
        }
        let last_start = floor_to(self.pane_start(q), i128::from(self.slide));
        clamp(last_start + i128::from(self.size) + i128::from(lateness))
    }

    /// Panes `[first, last)` of the window starting at `start`.
    pub fn panes_of_window(&self, start: i64) -> (i64, i64) {
        let first = start.div_euclid(self.pane);
        (first, first + self.size / self.pane)
    }

    pub fn end_of(&self, start: i64) -> i64 {
        start.saturating_add(self.size)
    }
}

fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Windows holding time `t`, by brute force over every aligned start.
    fn windows_holding(g: &Geometry, t: i64) -> Vec<i64> {
        let mut starts = Vec::new();
        let mut s = t - t.rem_euclid(g.slide) - g.slide * g.size;
        while s <= t {
            if s <= t && t < s + g.size {
                starts.push(s);
            }
            s += g.slide;
        }
        starts
    }

    #[test]
    fn panes_belong_to_exactly_the_windows_their_times_belong_to() {
        for (size, slide) in [(10, 4), (10, 10), (60, 5), (9, 6), (7, 3)] {
            let g = Geometry::new(size, slide);
            for t in -50..50 {
                let q = g.pane_of(t);
                let got: Vec<i64> = g.starts_ending_in(q, i64::MIN, i64::MAX).collect();
                assert_eq!(
                    got,
                    windows_holding(&g, t),
                    "size {size} slide {slide} t {t}"
                );
            }
        }
    }

    #[test]
    fn the_fast_and_the_wide_pane_arithmetic_agree() {
        for (size, slide) in [(10, 4), (60_000, 5_000), (9, 6), (7, 7)] {
            let g = Geometry::new(size, slide);
            for q in [-1_000_000_007, -3, -1, 0, 1, 2, 297_488_496] {
                for (after, upto) in [
                    (i64::MIN, i64::MAX),
                    (-20, 40),
                    (1_487_442_480_000, i64::MAX),
                ] {
                    if let Some(fast) = g.start_range_i64(q, after, upto) {
                        assert_eq!(
                            fast,
                            g.start_range_i128(q, after, upto),
                            "{size}/{slide} q {q}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn starts_of_panes_are_the_sorted_union_of_each_panes_starts() {
        for (size, slide) in [(10, 4), (60, 5), (9, 6), (7, 7)] {
            let g = Geometry::new(size, slide);
            for (after, upto) in [(i64::MIN, i64::MAX), (-7, 13), (20, 21), (5, 5)] {
                for panes in [vec![-9, -2, 0, 1, 7], vec![3], vec![0, 40, 41, 90], vec![]] {
                    let mut expected: Vec<i64> = panes
                        .iter()
                        .flat_map(|&q| g.starts_ending_in(q, after, upto))
                        .collect();
                    expected.sort_unstable();
                    expected.dedup();
                    let mut got = Vec::new();
                    g.starts_of_panes(panes.iter().copied(), after, upto, |s| got.push(s));
                    assert_eq!(got, expected, "{size}/{slide} ({after}, {upto}] {panes:?}");
                }
            }
        }
    }

    #[test]
    fn starts_ending_between_are_the_windows_ending_in_the_interval() {
        for (size, slide) in [(10, 4), (60, 5), (9, 6), (7, 7)] {
            let g = Geometry::new(size, slide);
            for (after, upto) in [(-7, 13), (20, 21), (5, 5), (3, 4), (-40, -30)] {
                let expected: Vec<i64> = (-100..100)
                    .filter(|s| s % slide == 0 && after < s + size && s + size <= upto)
                    .collect();
                assert_eq!(
                    g.starts_ending_between(after, upto, 1000),
                    Some(expected.clone()),
                    "{size}/{slide} ({after}, {upto}]"
                );
                if expected.len() > 1 {
                    assert_eq!(g.starts_ending_between(after, upto, 1), None);
                }
            }
            assert_eq!(g.starts_ending_between(i64::MIN, 0, 1000), None);
        }
    }

    #[test]
    fn windows_are_aligned_to_the_epoch_for_negative_times() {
        let g = Geometry::new(10, 5);
        let q = g.pane_of(-1);
        assert_eq!(q, -1);
        let got: Vec<i64> = g.starts_ending_in(q, i64::MIN, i64::MAX).collect();
        assert_eq!(got, vec![-10, -5]);
    }

    #[test]
    fn first_end_after_skips_windows_the_watermark_has_passed() {
        let g = Geometry::new(10, 4);
        // Time 9 is in windows starting 0, 4, 8 (ends 10, 14, 18).
        let q = g.pane_of(9);
        assert_eq!(g.first_end_after(q, i64::MIN), Some(10));
        assert_eq!(g.first_end_after(q, 10), Some(14));
        assert_eq!(g.first_end_after(q, 17), Some(18));
        assert_eq!(g.first_end_after(q, 18), None);
        assert_eq!(g.expiry(q, 3), 21);
    }

    #[test]
    fn extreme_watermarks_do_not_overflow() {
        let g = Geometry::new(60_000, 5_000);
        let q = g.pane_of(1_487_442_480_000);
        assert!(g.first_end_after(q, i64::MIN).is_some());
        assert_eq!(g.first_end_after(q, i64::MAX), None);
        assert_eq!(next_multiple_after(i64::MIN, 7) % 7, 0);
        assert_eq!(next_multiple_after(i64::MAX, 7), i64::MAX);
        assert_eq!(g.expiry(q, i64::MAX), i64::MAX);
    }
}
