//! The JSON pieces of a result line, written straight into the line buffer.
//!
//! Why by hand: rendering through serde_json was ≈ 20 % of a shard worker's
//! time in the pipeline benchmark (3.4 result lines per input row with the
//! BTS manifest); most of it went to the `Serializer` machinery and
//! `io::Write` calls per fragment, not to formatting. The output is
//! byte-for-byte serde_json's: the same escapes (`\"`, `\\`, `\b\f\n\r\t`,
//! other controls as `\u00xx`, nothing else), integers by `itoa`, finite
//! floats by `zmij` (what serde_json calls), non-finite floats as `null`.
//! `sink/tests.rs` checks the equality on arbitrary records.

/// What a byte is escaped as: 0 = not escaped, `u` = `\u00xx`.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether any of the 8 bytes of `word` is a control, `"` or `\\`
/// (bit tricks of "Bit Twiddling Hacks": a byte is zero after the xor, or
/// below 0x20, iff its high bit survives).
#[inline]
fn word_needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    (below_space
        | has_zero(word ^ (ONES * u64::from(b'"')))
        | has_zero(word ^ (ONES * u64::from(b'\\'))))
        != 0
}

/// Appends `s` as a JSON string, quotes included.
#[inline]
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Nearly every string of a result line needs no escape: check 8 bytes
    // at a time and copy it whole.
    let mut chunks = bytes.chunks_exact(8);
    let clean = chunks.all(|c| {
        let mut word = [0u8; 8];
        word.copy_from_slice(c);
        !word_needs_escape(u64::from_le_bytes(word))
    }) && chunks.remainder().iter().all(|&b| ESCAPE[b as usize] == 0);
    if clean {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = ESCAPE[b as usize];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[run..i]);
        run = i + 1;
        if escape == b'u' {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// Appends `"name":` (an object key and its colon).
#[inline]
pub(crate) fn key(out: &mut Vec<u8>, name: &str) {
    string(out, name);
    out.push(b':');
}

#[inline]
pub(crate) fn int(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

#[inline]
pub(crate) fn uint(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// The shortest text that reads back the same, always with a `.` or an
/// exponent (`241.0`); `null` for NaN and infinities (JSON has neither).
#[inline]
pub(crate) fn float(out: &mut Vec<u8>, value: f64) {
    if value.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

#[inline]
pub(crate) fn boolean(out: &mut Vec<u8>, value: bool) {
    out.extend_from_slice(if value { b"true" } else { b"false" });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_check_finds_every_escaped_byte_at_every_position() {
        for b in 0..=255u8 {
            for at in 0..8 {
                let mut word = *b"abcdefgh";
                word[at] = b;
                assert_eq!(
                    word_needs_escape(u64::from_le_bytes(word)),
                    ESCAPE[b as usize] != 0,
                    "byte {b:#04x} at {at}"
                );
            }
        }
    }
}
