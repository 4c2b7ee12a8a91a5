//! Which parameters of the client's query string go on to the upstream.

use super::service::BuildError;

/// The query parameter names a provider passes on; by default none, so the client's query
/// string is dropped.
#[derive(Clone, Debug, Default)]
pub(super) struct QueryAllowlist {
    names: Box<[Box<str>]>,
}

impl QueryAllowlist {
    /// An allowlist of `names`, each made of ASCII letters, digits and `-._~` (the characters
    /// a query name needs no escaping for), so a name is matched exactly as it is written.
    pub(super) fn new(names: Vec<String>) -> Result<Self, BuildError> {
        for name in &names {
            let plain = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
            if name.is_empty() || !name.bytes().all(plain) {
                return Err(BuildError::new(format!(
                    "allow_query_params: `{name}` is not a plain query parameter name \
                     (letters, digits and -._~)"
                )));
            }
        }
        Ok(Self {
            names: names.into_iter().map(String::into_boxed_str).collect(),
        })
    }

    /// The pairs of `query` whose name is allowed, in the client's order and as the client
    /// wrote them; `None` when there are none.
    ///
    /// A name is compared as written, not decoded: `api%2Dversion` is not `api-version` and is
    /// dropped. A pair holding a `;` is dropped too, since some servers split on it and would
    /// read a parameter of the client's choosing from inside an allowed value.
    pub(super) fn filter(&self, query: &str) -> Option<String> {
        if self.names.is_empty() {
            return None;
        }
        let mut kept = String::new();
        for pair in query.split('&') {
            let name = pair.split_once('=').map_or(pair, |(name, _)| name);
            if pair.contains(';') || !self.names.iter().any(|allowed| **allowed == *name) {
                continue;
            }
            if !kept.is_empty() {
                kept.push('&');
            }
            kept.push_str(pair);
        }
        (!kept.is_empty()).then_some(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(names: &[&str]) -> QueryAllowlist {
        QueryAllowlist::new(names.iter().map(|n| (*n).to_owned()).collect()).unwrap()
    }

    #[test]
    fn nothing_passes_by_default() {
        assert_eq!(
            QueryAllowlist::default().filter("api-version=1&key=x"),
            None
        );
    }

    #[test]
    fn only_allowed_names_pass_as_written() {
        let list = allow(&["api-version", "x"]);
        assert_eq!(
            list.filter("api-version=2024-10-21&key=evil&x&x=%20y")
                .as_deref(),
            Some("api-version=2024-10-21&x&x=%20y")
        );
        assert_eq!(list.filter("key=evil&api%2Dversion=1"), None);
        assert_eq!(list.filter("api-version=1;key=evil"), None);
        assert_eq!(list.filter(""), None);
    }

    #[test]
    fn names_that_need_escaping_are_build_errors() {
        for bad in ["", "a=b", "a&b", "a b", "a;b", "a%20b", "é"] {
            assert!(
                QueryAllowlist::new(vec![bad.to_owned()]).is_err(),
                "{bad:?}"
            );
        }
    }
}
