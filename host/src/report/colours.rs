//! The report's colour scheme. It is deterministic and public so that a
//! test looking at a screenshot of the report can tell which chart drew
//! what: every chart of a report gets its own accent (by its position in
//! the report), a series chart's further lines their own colours, and the
//! highlighted bar (the largest, the peak hour) one colour no data bar uses.
//! All are opaque and drawn without transparency, so a browser paints them
//! exactly.

use plotters::style::RGBColor;

/// An opaque sRGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Colour {
    pub r: u8,
    pub g: u8,
    pub b: u8,
}

impl Colour {
    const fn rgb(r: u8, g: u8, b: u8) -> Self {
        Self { r, g, b }
    }

    /// `#rrggbb`, for CSS.
    pub fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.r, self.g, self.b)
    }

    pub(crate) fn plotters(self) -> RGBColor {
        RGBColor(self.r, self.g, self.b)
    }
}

/// The largest bar of a bars chart and the peak hour of a profile.
pub const HIGHLIGHT: Colour = Colour::rgb(0xff, 0x7f, 0x0e);

/// Chart accents, one per chart in report order (cycling): the bars of a
/// bars, histogram or profile chart, the first (largest) line of a series.
/// Neither red nor orange (the highlight) nor grey (axes, grid).
pub const ACCENTS: [Colour; 10] = [
    Colour::rgb(0x1f, 0x77, 0xb4), // blue
    Colour::rgb(0x2c, 0xa0, 0x2c), // green
    Colour::rgb(0x94, 0x67, 0xbd), // purple
    Colour::rgb(0x17, 0xbe, 0xcf), // cyan
    Colour::rgb(0x8c, 0x56, 0x4b), // brown
    Colour::rgb(0xe3, 0x77, 0xc2), // pink
    Colour::rgb(0xbc, 0xbd, 0x22), // olive
    Colour::rgb(0x39, 0x3b, 0x79), // indigo
    Colour::rgb(0x63, 0x79, 0x39), // moss
    Colour::rgb(0x7b, 0x41, 0x73), // plum
];

/// The 2nd…8th line of a series chart, in order of the keys' totals.
/// Distinct from every accent, so a series chart's other keys never count
/// as another chart's accent.
pub const SERIES_OTHERS: [Colour; 7] = [
    Colour::rgb(0x84, 0x3c, 0x39), // brick
    Colour::rgb(0x8c, 0xa2, 0x52), // light moss
    Colour::rgb(0x6b, 0x6e, 0xcf), // periwinkle
    Colour::rgb(0xbd, 0x9e, 0x39), // mustard
    Colour::rgb(0xa5, 0x51, 0x94), // magenta
    Colour::rgb(0x3f, 0x9f, 0x8f), // teal
    Colour::rgb(0x55, 0x55, 0x55), // dark grey
];

/// The accent of the chart at `ordinal` (0-based) among all charts of the
/// report, counting every job's charts in order, also those without data.
pub fn accent(ordinal: usize) -> Colour {
    ACCENTS[ordinal % ACCENTS.len()]
}

/// The line colour of the `rank`-th key (0 = largest total) of the series
/// chart at `ordinal`.
pub fn series_line(ordinal: usize, rank: usize) -> Colour {
    match rank.checked_sub(1) {
        None => accent(ordinal),
        Some(other) => SERIES_OTHERS[other % SERIES_OTHERS.len()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A screenshot test tells charts apart by these colours: no two may be
    /// the same, nor close to each other.
    #[test]
    fn colours_are_pairwise_distinct() {
        let mut all: Vec<Colour> = ACCENTS.to_vec();
        all.extend(SERIES_OTHERS);
        all.push(HIGHLIGHT);
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                let d = (i32::from(a.r) - i32::from(b.r)).abs()
                    + (i32::from(a.g) - i32::from(b.g)).abs()
                    + (i32::from(a.b) - i32::from(b.b)).abs();
                assert!(d > 30, "{} and {} are too close", a.hex(), b.hex());
            }
        }
    }

    #[test]
    fn series_first_line_is_the_accent() {
        assert_eq!(series_line(3, 0), accent(3));
        assert_eq!(series_line(3, 1), SERIES_OTHERS[0]);
        assert_eq!(accent(ACCENTS.len() + 1), ACCENTS[1]);
    }
}
