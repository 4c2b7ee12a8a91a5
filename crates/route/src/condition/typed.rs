//! The typed form of the condition language (see "Written in Rust" in the
//! [module docs](super) for the operators side by side with their JSON twins).
//!
//! ```
//! use portcullis_core::context::Metadata;
//! use portcullis_core::RequestView;
//! use portcullis_route::{BuildError, Condition, RouteInput};
//!
//! # fn main() -> Result<(), BuildError> {
//! let condition = Condition::and([
//!     Condition::metadata("tier").gte(2),
//!     Condition::or([
//!         Condition::param("response_format.type").eq("json_object"),
//!         Condition::param("model").regex("^gpt-4o")?,
//!     ]),
//! ]);
//!
//! let metadata = Metadata::new([("tier".into(), "3".into())].into());
//! let view = RequestView::parse(r#"{"model":"gpt-4o-mini"}"#.into()).unwrap();
//! let input = RouteInput::new().metadata(&metadata).view(&view);
//! assert!(condition.matches(&input));
//! assert!(!condition.matches(&RouteInput::new().view(&view)));
//! # Ok(()) }
//! ```

use serde_json::Value;

use super::predicate::{Custom, Predicate};
use super::{Clause, Condition, Field, Query, RegexLimits, Test, compile};
use crate::{BuildError, RouteInput};

impl Condition {
    /// The metadata value under `key` (`metadata.KEY`): a string, compared as one.
    ///
    /// The key is taken whole, dots included, as in the JSON form.
    pub fn metadata(key: impl Into<String>) -> TextField {
        TextField {
            field: Field::Metadata(key.into().into_boxed_str()),
        }
    }

    /// The URI path of the request (`url.pathname`), without the query string.
    pub fn path() -> TextField {
        TextField {
            field: Field::Pathname,
        }
    }

    /// The value at `path` in the JSON body (`params.PATH`): `path` is split on dots, and a
    /// segment that is a number indexes an array (`"messages.0.role"`).
    ///
    /// For a key that itself holds a dot, give the segments with
    /// [`param_path`](Self::param_path). An empty segment (`"a..b"`, which the JSON form
    /// refuses as a typo) reads the empty key.
    pub fn param(path: &str) -> ParamField {
        Self::param_path(path.split('.'))
    }

    /// The value at a path of segments in the JSON body: `["metadata", "a.b"]` reads the key
    /// `a.b` of the object `metadata`; a segment that is a number indexes an array.
    pub fn param_path<I>(segments: I) -> ParamField
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        ParamField {
            field: Field::Params(
                segments
                    .into_iter()
                    .map(|s| s.into().into_boxed_str())
                    .collect(),
            ),
        }
    }

    /// Holds when every condition holds (`$and`); when there are none, always.
    pub fn and(conditions: impl IntoIterator<Item = Condition>) -> Condition {
        Self::clause(Clause::All(
            conditions.into_iter().map(|c| c.query).collect(),
        ))
    }

    /// Holds when some condition holds (`$or`); when there are none, never.
    pub fn or(conditions: impl IntoIterator<Item = Condition>) -> Condition {
        Self::clause(Clause::Any(
            conditions.into_iter().map(|c| c.query).collect(),
        ))
    }

    /// A condition decided by a closure over the request's [`RouteInput`]: its metadata,
    /// parsed body, path, headers and extensions.
    ///
    /// It costs one indirect call where it is reached; see [`Predicate`] for the tradeoff.
    ///
    /// ```
    /// use portcullis_route::{Condition, RouteInput};
    ///
    /// let admin = Condition::predicate(|input| {
    ///     input.get_path().is_some_and(|path| path.starts_with("/admin/"))
    /// });
    /// assert!(admin.matches(&RouteInput::new().path("/admin/v1/chat/completions")));
    /// assert!(!admin.matches(&RouteInput::new().path("/v1/chat/completions")));
    /// ```
    pub fn predicate<F>(predicate: F) -> Condition
    where
        F: Fn(&RouteInput<'_>) -> bool + Send + Sync + 'static,
    {
        Self::custom(predicate)
    }

    /// A condition decided by any [`Predicate`] (a type of the caller's that implements it;
    /// for a closure [`predicate`](Self::predicate) infers the argument's type).
    pub fn custom(predicate: impl Predicate) -> Condition {
        Self::clause(Clause::Custom(Custom::new(predicate)))
    }

    fn clause(clause: Clause) -> Condition {
        Condition {
            query: Query {
                clauses: Box::new([clause]),
            },
        }
    }

    fn test(field: Field, test: Test) -> Condition {
        Self::clause(Clause::Field {
            field,
            tests: Box::new([test]),
        })
    }

    fn regex_test(field: Field, pattern: &str, limits: &RegexLimits) -> Result<Self, BuildError> {
        match compile::regex(pattern, limits) {
            Ok(regex) => Ok(Self::test(field, Test::Regex(regex))),
            // Where the JSON form would put it: `"params.model".$regex`.
            Err(e) => Err(e.in_key("$regex").in_key(&field.name())),
        }
    }
}

/// A field whose value is a string: a metadata value ([`Condition::metadata`]) or the path
/// ([`Condition::path`]). Its operators make a [`Condition`].
#[derive(Clone, Debug)]
#[must_use = "a field tests nothing until an operator such as `eq` makes it a condition"]
pub struct TextField {
    field: Field,
}

impl TextField {
    /// Holds when the value is `value` (`$eq`); false when the field is missing.
    pub fn eq(self, value: impl Into<String>) -> Condition {
        Condition::test(self.field, Test::Eq(Value::String(value.into())))
    }

    /// Holds when the value is not `value` (`$ne`); **true** when the field is missing.
    pub fn ne(self, value: impl Into<String>) -> Condition {
        Condition::test(self.field, Test::Ne(Value::String(value.into())))
    }

    /// Holds when the value reads as a number greater than `bound` (`$gt`).
    pub fn gt(self, bound: impl Into<f64>) -> Condition {
        Condition::test(self.field, Test::Gt(bound.into()))
    }

    /// Holds when the value reads as a number at least `bound` (`$gte`).
    pub fn gte(self, bound: impl Into<f64>) -> Condition {
        Condition::test(self.field, Test::Gte(bound.into()))
    }

    /// Holds when the value reads as a number less than `bound` (`$lt`).
    pub fn lt(self, bound: impl Into<f64>) -> Condition {
        Condition::test(self.field, Test::Lt(bound.into()))
    }

    /// Holds when the value reads as a number at most `bound` (`$lte`).
    pub fn lte(self, bound: impl Into<f64>) -> Condition {
        Condition::test(self.field, Test::Lte(bound.into()))
    }

    /// Holds when the value is one of `values` (`$in`); false when the field is missing.
    pub fn is_in<I>(self, values: I) -> Condition
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        Condition::test(self.field, Test::In(strings(values)))
    }

    /// Holds when the value is none of `values` (`$nin`); **true** when the field is missing.
    pub fn not_in<I>(self, values: I) -> Condition
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        Condition::test(self.field, Test::Nin(strings(values)))
    }

    /// Holds when `pattern` finds a match in the value (`$regex`), built within the default
    /// [`RegexLimits`]; a pattern that is invalid or past the limits is a [`BuildError`].
    pub fn regex(self, pattern: &str) -> Result<Condition, BuildError> {
        self.regex_with(pattern, &RegexLimits::default())
    }

    /// [`regex`](Self::regex) built within `limits`.
    pub fn regex_with(self, pattern: &str, limits: &RegexLimits) -> Result<Condition, BuildError> {
        Condition::regex_test(self.field, pattern, limits)
    }
}

/// A field of the JSON body ([`Condition::param`]): any JSON value, compared by strict JSON
/// equality. Its operators make a [`Condition`].
#[derive(Clone, Debug)]
#[must_use = "a field tests nothing until an operator such as `eq` makes it a condition"]
pub struct ParamField {
    field: Field,
}

impl ParamField {
    /// Holds when the value equals `value` (`$eq`, strict: `"1"` is not `1`); false when the
    /// field is missing. Anything `serde_json::Value` comes from will do: `"gpt-4o"`, `true`,
    /// `3`, `serde_json::json!({..})`.
    pub fn eq(self, value: impl Into<Value>) -> Condition {
        Condition::test(self.field, Test::Eq(value.into()))
    }

    /// Holds when the value does not equal `value` (`$ne`); **true** when the field is
    /// missing.
    pub fn ne(self, value: impl Into<Value>) -> Condition {
        Condition::test(self.field, Test::Ne(value.into()))
    }

    /// Holds when the value is a number, or a string that reads as one, greater than `bound`
    /// (`$gt`).
    pub fn gt(self, bound: impl Into<f64>) -> Condition {
        Condition::test(self.field, Test::Gt(bound.into()))
    }

    /// Holds when the value reads as a number at least `bound` (`$gte`).
    pub fn gte(self, bound: impl Into<f64>) -> Condition {
        Condition::test(self.field, Test::Gte(bound.into()))
    }

    /// Holds when the value reads as a number less than `bound` (`$lt`).
    pub fn lt(self, bound: impl Into<f64>) -> Condition {
        Condition::test(self.field, Test::Lt(bound.into()))
    }

    /// Holds when the value reads as a number at most `bound` (`$lte`).
    pub fn lte(self, bound: impl Into<f64>) -> Condition {
        Condition::test(self.field, Test::Lte(bound.into()))
    }

    /// Holds when the value equals one of `values` (`$in`); false when the field is missing.
    pub fn is_in<I>(self, values: I) -> Condition
    where
        I: IntoIterator,
        I::Item: Into<Value>,
    {
        Condition::test(self.field, Test::In(json_values(values)))
    }

    /// Holds when the value equals none of `values` (`$nin`); **true** when the field is
    /// missing.
    pub fn not_in<I>(self, values: I) -> Condition
    where
        I: IntoIterator,
        I::Item: Into<Value>,
    {
        Condition::test(self.field, Test::Nin(json_values(values)))
    }

    /// Holds when the value is a string in which `pattern` finds a match (`$regex`), built
    /// within the default [`RegexLimits`]; a pattern that is invalid or past the limits is a
    /// [`BuildError`].
    pub fn regex(self, pattern: &str) -> Result<Condition, BuildError> {
        self.regex_with(pattern, &RegexLimits::default())
    }

    /// [`regex`](Self::regex) built within `limits`.
    ///
    /// ```
    /// use portcullis_route::{Condition, RegexLimits};
    ///
    /// let err = Condition::param("user").regex(r"\w{60}").unwrap_err();
    /// assert_eq!(err.path(), r#""params.user".$regex"#);
    /// let roomy = RegexLimits::default().size_limit(16 << 20);
    /// assert!(Condition::param("user").regex_with(r"\w{60}", &roomy).is_ok());
    /// ```
    pub fn regex_with(self, pattern: &str, limits: &RegexLimits) -> Result<Condition, BuildError> {
        Condition::regex_test(self.field, pattern, limits)
    }
}

fn strings<I>(values: I) -> Box<[Value]>
where
    I: IntoIterator,
    I::Item: Into<String>,
{
    values
        .into_iter()
        .map(|v| Value::String(v.into()))
        .collect()
}

fn json_values<I>(values: I) -> Box<[Value]>
where
    I: IntoIterator,
    I::Item: Into<Value>,
{
    values.into_iter().map(Into::into).collect()
}
