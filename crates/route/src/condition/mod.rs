//! [`Condition`]: one query of Portkey's condition language, compiled.
//!
//! A condition is written in one of three ways, all compiled to one tree and evaluated by one
//! piece of code:
//!
//! - as JSON, Portkey's form, with [`Condition::compile`] (what the gateway reads);
//! - in Rust, with the typed builder ([`Condition::metadata`], [`Condition::param`],
//!   [`Condition::path`], [`Condition::and`], [`Condition::or`]), where the compiler checks
//!   what the JSON compiler checks at build time (see [`TextField`] and [`ParamField`]);
//! - as a [`Predicate`]: Rust code over the request ([`Condition::predicate`]).
//!
//! The semantics below are written in JSON terms; each typed operator means the same.
//!
//! A query is a JSON object. Its keys are fields or the combinators `$and` / `$or` (each an
//! array of queries); **all keys must hold** (their order never matters). A field maps to a
//! plain value (equality) or to an object of operators, which must all hold. `{}` holds for
//! every request, `{"$and": []}` too, `{"$or": []}` for none.
//!
//!
//! | operator | operand | holds when the field… | missing field |
//! |---|---|---|---|
//! | `$eq` (or a plain value) | any JSON value | equals the operand (strict, see below) | false |
//! | `$ne` | any JSON value | does not equal it | **true** |
//! | `$gt` `$gte` `$lt` `$lte` | a number, or a numeric string | reads as a number and compares so | false |
//! | `$in` | an array | equals one of its items | false |
//! | `$nin` | an array | equals none of its items | **true** |
//! | `$regex` | a pattern ([`regex`] syntax) | is a string the pattern finds a match in | false |
//!
//! A `$regex` is built within [`RegexLimits`]: a pattern too long, or one whose compiled
//! program would pass the size limit, is a build error at its position (the defaults hold any
//! routing rule and refuse patterns such as `\w{60}` that cost seconds and megabytes to build).
//!
//! Fields: `metadata.KEY` (the request's [`Metadata`](portcullis_core::context::Metadata);
//! everything after `metadata.` is the key), `params.PATH` (the JSON body, `PATH` split on
//! dots to any depth; a number segment indexes an array: `params.messages.0.role`) and
//! `url.pathname` (the request's URI path).
//!
//! **Equality is strict JSON equality**: same type, same value. `"1"` does not equal `1`,
//! `true` does not equal `"true"`, `null` equals only `null`; numbers compare by value
//! (`1` equals `1.0`); arrays and objects compare element by element (key order aside).
//! Metadata values and the path are always strings, so comparing them for equality with
//! anything but a string could never hold: the compiler refuses it (`write "3"`).
//!
//! **Ordering is numeric**: a JSON number, or a string that reads as a finite number once
//! trimmed (`"3"`, `"-2.5"`, `"1e3"`), compares as that number (a 64-bit float); anything
//! else (`"3abc"`, `true`, `null`, arrays, objects, a missing field) makes the comparison
//! false. So `{"metadata.tier": {"$gt": 2}}` holds for the metadata value `"3"`.
//!
//! # Written in Rust
//!
//! [`Condition::metadata`], [`Condition::param`] and [`Condition::path`] name a field, an
//! operator method makes it a condition, and [`Condition::and`] / [`Condition::or`] combine
//! conditions. The result is the same compiled tree as the JSON form's, evaluated by the
//! same code, so `Condition::metadata("plan").eq("paid")` decides exactly as
//! `{"metadata.plan": {"$eq": "paid"}}` does. What the JSON compiler checks at build time the
//! types check here: metadata values and the path are strings ([`TextField`]), so their
//! `eq`/`ne`/`is_in`/`not_in` take strings; body fields ([`ParamField`]) take any JSON value;
//! bounds are numbers (a NaN bound, which JSON cannot write, makes the comparison false). Only a regex can still be wrong, and [`TextField::regex`] /
//! [`ParamField::regex`] say so at once, with the [`BuildError`] the JSON form would give
//! (path `"params.model".$regex`), built within [`RegexLimits`]: the default ones, or those
//! given to `regex_with` (a router builder's `regex_limits` governs the JSON conditions it
//! compiles; a typed regex is built where it is written).
//!
//! | JSON | typed |
//! |---|---|
//! | `{"metadata.plan": "paid"}`, `{"$eq": "paid"}` | `Condition::metadata("plan").eq("paid")` |
//! | `{"$ne": "free"}` | `.ne("free")` |
//! | `{"$gt": 2}`, `$gte`, `$lt`, `$lte` | `.gt(2)`, `.gte(..)`, `.lt(..)`, `.lte(..)` |
//! | `{"$in": ["a", "b"]}`, `$nin` | `.is_in(["a", "b"])`, `.not_in(..)` |
//! | `{"$regex": "^gpt"}` | `.regex("^gpt")?`, `.regex_with("^gpt", &limits)?` |
//! | `"params.response_format.type"` | `Condition::param("response_format.type")` |
//! | `"url.pathname"` | `Condition::path()` |
//! | `{"$and": [..]}`, `{"$or": [..]}` | `Condition::and([..])`, `Condition::or([..])` |
//!
//! Where the query language is not enough, a [`Predicate`] (Rust code over the request, a
//! closure with [`Condition::predicate`]) is a condition too, and combines with the others.
//!
//! ```
//! use portcullis_core::context::Metadata;
//! use portcullis_core::RequestView;
//! use portcullis_route::{Condition, RouteInput};
//! use serde_json::json;
//!
//! let condition = Condition::compile(&json!({
//!     "metadata.tier": {"$gte": 2},
//!     "$or": [
//!         {"params.response_format.type": "json_object"},
//!         {"params.model": {"$regex": "^gpt-4o"}},
//!     ],
//! }))
//! .unwrap();
//!
//! let metadata = Metadata::new([("tier".into(), "3".into())].into());
//! let view = RequestView::parse(r#"{"model":"gpt-4o-mini"}"#.into()).unwrap();
//! let input = RouteInput::new().metadata(&metadata).view(&view).path("/v1/chat/completions");
//! assert!(condition.matches(&input));
//! assert!(!condition.matches(&RouteInput::new().view(&view)));
//!
//! // The same, typed.
//! let typed = Condition::and([
//!     Condition::metadata("tier").gte(2),
//!     Condition::or([
//!         Condition::param("response_format.type").eq("json_object"),
//!         Condition::param("model").regex("^gpt-4o").unwrap(),
//!     ]),
//! ]);
//! assert!(typed.matches(&input));
//! assert!(!typed.matches(&RouteInput::new().view(&view)));
//! ```

mod compile;
mod predicate;
mod typed;
mod value;

use regex::Regex;
use serde_json::Value;

use self::predicate::Custom;
pub use self::predicate::Predicate;
pub use self::typed::{ParamField, TextField};
use self::value::Found;
use crate::{BuildError, RouteInput};

/// One query of Portkey's condition language, compiled: fields resolved, paths split,
/// operands checked, regexes built (see the [module docs](self) for the semantics).
///
/// Made from JSON ([`compile`](Self::compile)), with the typed builder
/// ([`metadata`](Self::metadata), [`param`](Self::param), [`path`](Self::path),
/// [`and`](Self::and), [`or`](Self::or)) or from Rust code ([`predicate`](Self::predicate)).
#[derive(Clone, Debug)]
pub struct Condition {
    query: Query,
}

impl Condition {
    /// Compiles a query with the default [`RegexLimits`]. Errors name their position in
    /// `query`, e.g. `$or[0]."params.model".$regex: invalid regex: …`.
    pub fn compile(query: &Value) -> Result<Self, BuildError> {
        Self::compile_with(query, &RegexLimits::default())
    }

    /// Compiles a query, building its regexes within `limits`: a pattern longer than
    /// [`RegexLimits::max_len`] or one that compiles larger than its size limits is a
    /// [`BuildError`] at the pattern's position.
    ///
    /// ```
    /// use portcullis_route::condition::{Condition, RegexLimits};
    /// use serde_json::json;
    ///
    /// let bomb = json!({"params.user": {"$regex": "\\w{60}"}});
    /// let err = Condition::compile_with(&bomb, &RegexLimits::default()).unwrap_err();
    /// assert_eq!(err.path(), r#""params.user".$regex"#);
    /// assert!(err.message().contains("larger than the limit"));
    ///
    /// let roomy = RegexLimits::default().size_limit(16 << 20);
    /// assert!(Condition::compile_with(&bomb, &roomy).is_ok());
    /// ```
    pub fn compile_with(query: &Value, limits: &RegexLimits) -> Result<Self, BuildError> {
        compile::query(query, limits).map(|query| Self { query })
    }

    /// Whether the query holds for `input`.
    pub fn matches(&self, input: &RouteInput<'_>) -> bool {
        self.query.matches(input)
    }
}

/// How large a `$regex` may be: its source, and what compiling it may allocate.
///
/// The defaults ([`RegexLimits::DEFAULT_SIZE_LIMIT`], [`RegexLimits::DEFAULT_DFA_SIZE_LIMIT`],
/// [`RegexLimits::DEFAULT_MAX_LEN`]) hold every pattern a routing rule needs (prefixes,
/// alternations, short classes) and refuse the ones that cost seconds of CPU and megabytes of
/// memory to build, such as a counted repetition of a Unicode class (`\w{60}`). Conditions
/// that come from untrusted hands should be compiled within limits at least this tight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegexLimits {
    size_limit: usize,
    dfa_size_limit: usize,
    max_len: usize,
}

impl RegexLimits {
    /// The default limit on a compiled pattern's program, in bytes (256 KiB).
    pub const DEFAULT_SIZE_LIMIT: usize = 256 * 1024;
    /// The default limit on a pattern's lazy DFA cache, in bytes (256 KiB).
    pub const DEFAULT_DFA_SIZE_LIMIT: usize = 256 * 1024;
    /// The default limit on a pattern's source, in bytes (1 KiB).
    pub const DEFAULT_MAX_LEN: usize = 1024;

    /// The limit on a compiled pattern's program, in bytes
    /// ([`regex::RegexBuilder::size_limit`]): a pattern that compiles larger is refused.
    pub fn size_limit(mut self, bytes: usize) -> Self {
        self.size_limit = bytes;
        self
    }

    /// The limit on the cache of a pattern's lazy DFA, in bytes
    /// ([`regex::RegexBuilder::dfa_size_limit`]): matching slows down past it rather than
    /// allocating more.
    pub fn dfa_size_limit(mut self, bytes: usize) -> Self {
        self.dfa_size_limit = bytes;
        self
    }

    /// The limit on a pattern's source, in bytes: a longer one is refused before it is parsed.
    pub fn max_len(mut self, bytes: usize) -> Self {
        self.max_len = bytes;
        self
    }

    /// The limit on a compiled pattern's program, in bytes.
    pub fn get_size_limit(&self) -> usize {
        self.size_limit
    }

    /// The limit on a pattern's lazy DFA cache, in bytes.
    pub fn get_dfa_size_limit(&self) -> usize {
        self.dfa_size_limit
    }

    /// The limit on a pattern's source, in bytes.
    pub fn get_max_len(&self) -> usize {
        self.max_len
    }
}

impl Default for RegexLimits {
    fn default() -> Self {
        Self {
            size_limit: Self::DEFAULT_SIZE_LIMIT,
            dfa_size_limit: Self::DEFAULT_DFA_SIZE_LIMIT,
            max_len: Self::DEFAULT_MAX_LEN,
        }
    }
}

/// Clauses that must all hold.
#[derive(Clone, Debug)]
struct Query {
    clauses: Box<[Clause]>,
}

#[derive(Clone, Debug)]
enum Clause {
    /// `$and`: every query holds (true when there are none).
    All(Box<[Query]>),
    /// `$or`: some query holds (false when there are none).
    Any(Box<[Query]>),
    /// A field and the tests it must pass.
    Field { field: Field, tests: Box<[Test]> },
    /// Rust code ([`Condition::predicate`]).
    Custom(Custom),
}

#[derive(Clone, Debug)]
enum Field {
    Metadata(Box<str>),
    Params(Box<[Box<str>]>),
    Pathname,
}

#[derive(Clone, Debug)]
enum Test {
    Eq(Value),
    Ne(Value),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    In(Box<[Value]>),
    Nin(Box<[Value]>),
    Regex(Regex),
}

impl Query {
    fn matches(&self, input: &RouteInput<'_>) -> bool {
        self.clauses.iter().all(|clause| clause.matches(input))
    }
}

impl Clause {
    fn matches(&self, input: &RouteInput<'_>) -> bool {
        match self {
            Clause::All(queries) => queries.iter().all(|q| q.matches(input)),
            Clause::Any(queries) => queries.iter().any(|q| q.matches(input)),
            Clause::Field { field, tests } => {
                let found = field.read(input);
                tests.iter().all(|test| test.holds(found))
            }
            Clause::Custom(predicate) => predicate.matches(input),
        }
    }
}

impl Field {
    fn read<'a>(&self, input: &RouteInput<'a>) -> Option<Found<'a>> {
        match self {
            Field::Metadata(key) => input.metadata?.get(key).map(Found::Text),
            Field::Params(path) => input.view?.param(path).map(Found::Json),
            Field::Pathname => input.path.map(Found::Text),
        }
    }

    /// The field as the JSON form names it, for messages: `metadata.plan`, `params.a.b`.
    fn name(&self) -> String {
        match self {
            Field::Metadata(key) => format!("metadata.{key}"),
            Field::Params(path) => format!("params.{}", path.join(".")),
            Field::Pathname => "url.pathname".to_owned(),
        }
    }
}

impl Test {
    fn holds(&self, found: Option<Found<'_>>) -> bool {
        let Some(found) = found else {
            // A missing field equals nothing: only the negative tests hold.
            return matches!(self, Test::Ne(_) | Test::Nin(_));
        };
        match self {
            Test::Eq(operand) => found.equals(operand),
            Test::Ne(operand) => !found.equals(operand),
            Test::Gt(bound) => found.number().is_some_and(|n| n > *bound),
            Test::Gte(bound) => found.number().is_some_and(|n| n >= *bound),
            Test::Lt(bound) => found.number().is_some_and(|n| n < *bound),
            Test::Lte(bound) => found.number().is_some_and(|n| n <= *bound),
            Test::In(items) => items.iter().any(|item| found.equals(item)),
            Test::Nin(items) => !items.iter().any(|item| found.equals(item)),
            Test::Regex(regex) => found.text().is_some_and(|text| regex.is_match(text)),
        }
    }
}
