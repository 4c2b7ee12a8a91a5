//! [`ConditionalRouterBuilder`]: named targets, conditions and a default, checked once.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::service::Table;
use crate::{BuildError, Condition, ConditionalRouter, RegexLimits};

/// Builds a [`ConditionalRouter`]: targets by name (in order: their index is what
/// [`TargetPath`](portcullis_core::context::TargetPath) records), conditions in order, and
/// an optional default.
///
/// Conditions are compiled as they are added; target names are resolved by
/// [`build`](ConditionalRouterBuilder::build), so targets and conditions may come in any order.
pub struct ConditionalRouterBuilder<S> {
    targets: Vec<(String, S)>,
    conditions: Vec<(Condition, String)>,
    default: Option<String>,
    regex_limits: RegexLimits,
}

impl<S> ConditionalRouterBuilder<S> {
    pub(crate) fn new() -> Self {
        Self {
            targets: Vec::new(),
            conditions: Vec::new(),
            default: None,
            regex_limits: RegexLimits::default(),
        }
    }

    /// Adds a target named `name`.
    pub fn target(mut self, name: impl Into<String>, service: S) -> Self {
        self.targets.push((name.into(), service));
        self
    }

    /// Adds a compiled condition that sends the requests it matches to target `then`.
    pub fn condition(mut self, condition: Condition, then: impl Into<String>) -> Self {
        self.conditions.push((condition, then.into()));
        self
    }

    /// The limits the regexes of [`conditions`](ConditionalRouterBuilder::conditions) added
    /// after this call are built within (default: [`RegexLimits::default`]). A pattern past them
    /// is a [`BuildError`] at its path, e.g. `conditions[0].query."params.user".$regex`.
    pub fn regex_limits(mut self, limits: RegexLimits) -> Self {
        self.regex_limits = limits;
        self
    }

    /// Adds Portkey's `strategy.conditions`: an array of `{"query": {…}, "then": "name"}`,
    /// tried in order after any added before. Each query is compiled now; an error names its
    /// position, e.g. `conditions[1].query."metadata.plan".$in: …`.
    pub fn conditions(mut self, conditions: &Value) -> Result<Self, BuildError> {
        let Value::Array(items) = conditions else {
            return Err(
                BuildError::new("must be an array of {\"query\": …, \"then\": …}")
                    .prefixed("conditions"),
            );
        };
        for item in items {
            let position = self.conditions.len();
            let (condition, then) = entry(item, &self.regex_limits)
                .map_err(|e| e.in_index(position).prefixed("conditions"))?;
            self.conditions.push((condition, then));
        }
        Ok(self)
    }

    /// Sets the target for requests no condition matches (Portkey's `strategy.default`).
    /// Without one, such requests are answered 400.
    pub fn default(mut self, name: impl Into<String>) -> Self {
        self.default = Some(name.into());
        self
    }

    /// Builds the router: fails when there is no target, two targets share a name
    /// (``targets[2].name: `a` names two targets``), or the default or a condition names a
    /// target that does not exist (``conditions[0].then: no target is named `gold` ``),
    /// checked in that order.
    pub fn build(self) -> Result<ConditionalRouter<S>, BuildError> {
        if self.targets.is_empty() {
            return Err(BuildError::new("a router needs at least one target").prefixed("targets"));
        }
        if self.targets.len() > usize::from(u16::MAX) + 1 {
            return Err(BuildError::new("a router holds at most 65536 targets").prefixed("targets"));
        }
        let mut names: Vec<Box<str>> = Vec::with_capacity(self.targets.len());
        let mut services = Vec::with_capacity(self.targets.len());
        for (i, (name, service)) in self.targets.into_iter().enumerate() {
            if names.iter().any(|n| **n == *name) {
                return Err(BuildError::new(format!("`{name}` names two targets"))
                    .in_key("name")
                    .in_index(i)
                    .prefixed("targets"));
            }
            names.push(name.into());
            services.push(service);
        }
        let find = |name: &str| -> Result<u16, BuildError> {
            match names.iter().position(|n| **n == *name) {
                Some(index) => Ok(u16::try_from(index).expect("at most 65536 targets")),
                None => Err(BuildError::new(format!("no target is named `{name}`"))),
            }
        };
        // The default first, then each condition in order.
        let default = match self.default {
            Some(name) => Some(find(&name).map_err(|e| e.prefixed("default"))?),
            None => None,
        };
        let mut routes = Vec::with_capacity(self.conditions.len());
        for (i, (condition, then)) in self.conditions.into_iter().enumerate() {
            let index =
                find(&then).map_err(|e| e.in_key("then").in_index(i).prefixed("conditions"))?;
            routes.push((condition, index));
        }
        Ok(ConditionalRouter::from_parts(
            services.into(),
            Arc::new(Table {
                names: names.into(),
                routes: routes.into(),
                default,
            }),
        ))
    }
}

/// One `{"query": …, "then": …}`.
fn entry(item: &Value, limits: &RegexLimits) -> Result<(Condition, String), BuildError> {
    let Value::Object(object) = item else {
        return Err(BuildError::new(
            "a condition is an object {\"query\": …, \"then\": …}",
        ));
    };
    if let Some(key) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "query" | "then"))
    {
        return Err(
            BuildError::new("unknown key; a condition has \"query\" and \"then\"").in_key(key),
        );
    }
    let query = object
        .get("query")
        .ok_or_else(|| BuildError::new("missing \"query\""))?;
    let then = match object.get("then") {
        Some(Value::String(then)) => then.clone(),
        Some(_) => {
            return Err(BuildError::new("must be a target name (a string)").in_key("then"));
        }
        None => return Err(BuildError::new("missing \"then\"")),
    };
    let condition = Condition::compile_with(query, limits).map_err(|e| e.in_key("query"))?;
    Ok((condition, then))
}

impl<S> fmt::Debug for ConditionalRouterBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionalRouterBuilder")
            .field(
                "targets",
                &self.targets.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("conditions", &self.conditions.len())
            .field("default", &self.default)
            .field("regex_limits", &self.regex_limits)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::{ConditionalRouter, RegexLimits};

    #[test]
    fn names_are_resolved_default_first_then_each_condition() {
        let err = ConditionalRouter::<()>::builder()
            .target("a", ())
            .conditions(&json!([{"query": {}, "then": "gold"}]))
            .unwrap()
            .default("nope")
            .build()
            .unwrap_err();
        assert_eq!(err.to_string(), "default: no target is named `nope`");
        let err = ConditionalRouter::<()>::builder()
            .target("a", ())
            .conditions(&json!([{"query": {}, "then": "a"}, {"query": {}, "then": "gold"}]))
            .unwrap()
            .default("a")
            .build()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "conditions[1].then: no target is named `gold`"
        );
    }

    #[test]
    fn regex_limits_apply_to_the_conditions_added_after_them() {
        let bomb = json!([
            {"query": {"params.model": {"$regex": "^gpt"}}, "then": "a"},
            {"query": {"params.user": {"$regex": "\\w{60}"}}, "then": "a"}
        ]);
        let err = ConditionalRouter::<()>::builder()
            .target("a", ())
            .conditions(&bomb)
            .unwrap_err();
        assert_eq!(err.path(), r#"conditions[1].query."params.user".$regex"#);
        assert!(err.message().contains("larger than the limit"), "{err}");
        let roomy = RegexLimits::default().size_limit(64 << 20);
        assert!(
            ConditionalRouter::<()>::builder()
                .target("a", ())
                .regex_limits(roomy)
                .conditions(&bomb)
                .is_ok()
        );
    }
}
