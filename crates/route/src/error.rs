//! [`BuildError`]: a condition or router that cannot be built, with the position at fault.
//!
//! The type is core's, shared by every Portcullis builder. [`Condition::compile`] reports
//! paths relative to the query; the router's builder prefixes them with
//! `conditions[i].query`.
//!
//! ```
//! use portcullis_route::Condition;
//!
//! let err = Condition::compile(&serde_json::json!({"$or": [{"params.model": {"$regex": "("}}]}))
//!     .unwrap_err();
//! assert_eq!(err.path(), r#"$or[0]."params.model".$regex"#);
//! assert!(err.message().starts_with("invalid regex"));
//! assert!(err.to_string().starts_with(r#"$or[0]."params.model".$regex: invalid regex"#));
//! ```
//!
//! [`Condition::compile`]: crate::Condition::compile

pub use portcullis_core::BuildError;
