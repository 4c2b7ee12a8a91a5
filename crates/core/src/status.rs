//! [`StatusSet`]: a set of HTTP status codes, checked once and looked up with one mask.
//!
//! ```
//! use http::StatusCode;
//! use portcullis_core::StatusSet;
//!
//! let set = StatusSet::new([429, 503]).unwrap();
//! assert!(set.contains(StatusCode::TOO_MANY_REQUESTS));
//! assert!(!set.contains(StatusCode::BAD_GATEWAY));
//! assert_eq!(set.iter().collect::<Vec<_>>(), [429, 503]);
//!
//! let err = StatusSet::new([503, 99]).unwrap_err();
//! assert_eq!(err.code(), 99);
//! assert_eq!(err.to_string(), "must be HTTP status codes from 100 to 599, got 99");
//! ```

use std::fmt;

use http::StatusCode;

/// The lowest code a set holds.
const FIRST: u16 = 100;
/// The highest code a set holds.
const LAST: u16 = 599;
/// Words of 64 bits that cover codes 0 to 639.
const WORDS: usize = 10;

/// A set of HTTP status codes from 100 to 599: the statuses a policy acts on (retry's
/// `on_status_codes`, a fallback's triggers).
///
/// It is built from numbers as a config gives them, and a number outside 100..=599 is an
/// error ([`InvalidStatusCode`]), never silently dropped. A lookup is one shift and one mask.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct StatusSet([u64; WORDS]);

impl StatusSet {
    /// The set with no status.
    pub const EMPTY: Self = Self([0; WORDS]);

    /// The set of `codes`.
    ///
    /// # Errors
    /// The first code outside 100..=599.
    pub fn new(codes: impl IntoIterator<Item = u16>) -> Result<Self, InvalidStatusCode> {
        let mut bits = [0u64; WORDS];
        for code in codes {
            if !(FIRST..=LAST).contains(&code) {
                return Err(InvalidStatusCode(code));
            }
            bits[usize::from(code / 64)] |= 1 << (code % 64);
        }
        Ok(Self(bits))
    }

    /// Whether `status` is in the set.
    pub fn contains(&self, status: StatusCode) -> bool {
        self.contains_code(status.as_u16())
    }

    /// Whether the number `code` is in the set (never, outside 100..=599).
    pub fn contains_code(&self, code: u16) -> bool {
        self.0
            .get(usize::from(code / 64))
            .is_some_and(|word| word & (1 << (code % 64)) != 0)
    }

    /// Whether the set has no status.
    pub fn is_empty(&self) -> bool {
        *self == Self::EMPTY
    }

    /// The codes in the set, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (FIRST..=LAST).filter(|&code| self.contains_code(code))
    }
}

impl fmt::Debug for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// A number given as an HTTP status code that is not one (outside 100..=599).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidStatusCode(u16);

impl InvalidStatusCode {
    /// The number at fault.
    pub fn code(&self) -> u16 {
        self.0
    }
}

impl fmt::Display for InvalidStatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "must be HTTP status codes from {FIRST} to {LAST}, got {}",
            self.0
        )
    }
}

impl std::error::Error for InvalidStatusCode {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_every_valid_code_and_only_those() {
        let all = StatusSet::new(FIRST..=LAST).unwrap();
        assert_eq!(all.iter().count(), 500);
        for code in [0, 99, 600, 639, 640, 999, u16::MAX] {
            assert!(!all.contains_code(code), "{code}");
        }
        let some = StatusSet::new([599, 100, 446, 446]).unwrap();
        assert_eq!(some.iter().collect::<Vec<_>>(), [100, 446, 599]);
        assert!(some.contains(StatusCode::from_u16(446).unwrap()));
        assert!(!some.contains(StatusCode::OK));
        assert_eq!(format!("{some:?}"), "{100, 446, 599}");
    }

    #[test]
    fn invalid_codes_are_an_error() {
        for bad in [0, 1, 99, 600, 640, 999, 1000, u16::MAX] {
            let err = StatusSet::new([503, bad, 429]).unwrap_err();
            assert_eq!(err, InvalidStatusCode(bad));
            assert_eq!(err.code(), bad);
            assert_eq!(
                err.to_string(),
                format!("must be HTTP status codes from 100 to 599, got {bad}")
            );
        }
    }

    #[test]
    fn empty_is_empty() {
        let empty = StatusSet::new([]).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty, StatusSet::EMPTY);
        assert_eq!(empty, StatusSet::default());
        assert!(!StatusSet::new([200]).unwrap().is_empty());
        assert_eq!(empty.iter().next(), None);
    }
}
