//! Decimal digits written without a formatter: the one copy every writer of a log line,
//! a header, a JSON number or a target path shares (`core::fmt` costs a few hundred
//! instructions per integer, on every request).
//!
//! ```
//! let mut buf = [0u8; 20];
//! assert_eq!(portcullis_core::digits::decimal(1_234, &mut buf), "1234");
//! assert_eq!(portcullis_core::digits::decimal(u64::MAX, &mut buf), u64::MAX.to_string());
//! ```

/// Every number below 1,000 in three digits, zero-padded, checked as UTF-8 at compile time:
/// most numbers a request writes (statuses, counts, indices, small durations) are read from
/// here, without the digit loop or a run-time check of the bytes.
const BELOW_1000: &str = {
    const fn table() -> [u8; 3000] {
        let mut t = [0u8; 3000];
        let mut i = 0;
        while i < 1000 {
            t[3 * i] = b'0' + (i / 100) as u8;
            t[3 * i + 1] = b'0' + (i / 10 % 10) as u8;
            t[3 * i + 2] = b'0' + (i % 10) as u8;
            i += 1;
        }
        t
    }
    const BYTES: [u8; 3000] = table();
    match std::str::from_utf8(&BYTES) {
        Ok(text) => text,
        Err(_) => panic!("ASCII digits"),
    }
};

/// The decimal digits of `n` (what `{n}` writes), in `buf`.
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &str {
    if n < 1000 {
        let at = 3 * n as usize;
        let skip = match n {
            0..10 => 2,
            10..100 => 1,
            _ => 0,
        };
        return &BELOW_1000[at + skip..at + 3];
    }
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
        for n in (0..2_000).chain([65_535, u64::from(u32::MAX), u64::MAX - 1, u64::MAX]) {
            assert_eq!(super::decimal(n, &mut buf), n.to_string());
        }
    }
}
