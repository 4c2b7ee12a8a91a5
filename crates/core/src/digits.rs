//! Decimal digits written without a formatter: the one copy every writer of a log line,
//! a header, a JSON number or a target path shares (`core::fmt` costs a few hundred
//! instructions per integer, on every request).
//!
//! ```
//! let mut buf = [0u8; 20];
//! assert_eq!(portcullis_core::digits::decimal(1_234, &mut buf), "1234");
//! assert_eq!(portcullis_core::digits::decimal(u64::MAX, &mut buf), u64::MAX.to_string());
//! ```

/// The decimal digits of `n` (what `{n}` writes), in `buf`.
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[at..]).expect("ASCII digits")
}

#[cfg(test)]
mod tests {
    #[test]
    fn digits_are_what_display_writes() {
        let mut buf = [0u8; 20];
        for n in [
            0,
            7,
            10,
            99,
            100,
            65_535,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            assert_eq!(super::decimal(n, &mut buf), n.to_string());
        }
    }
}
