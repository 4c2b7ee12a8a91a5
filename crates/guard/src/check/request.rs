//! Checks over the request itself: model lists and rules, metadata keys, request types, and
//! the `addPrefix` mutator.

use std::collections::BTreeSet;

use portcullis_core::BuildError;
use serde_json::{Map, Value, json};

use super::params::{Operator, Params, split_commas};
use super::{Check, Outcome, Run, Transform};
use crate::context::{HookContext, RequestType};

/// `default.modelWhitelist` (also spelt `modelwhitelist`): the body's `model` is listed.
#[derive(Debug)]
pub(crate) struct ModelWhitelist {
    models: Vec<String>,
    not: bool,
}

impl ModelWhitelist {
    pub(crate) fn parse(p: &Params<'_>) -> Result<Self, BuildError> {
        Ok(Self {
            models: p.required_strings("models")?,
            not: p.not()?,
        })
    }
}

impl Check for ModelWhitelist {
    fn run(&self, cx: &HookContext) -> Run {
        let model = cx.request_field("model").and_then(Value::as_str);
        let listed = model.is_some_and(|m| self.models.iter().any(|x| x == m));
        let verdict = listed != self.not;
        Run::Done(Outcome::verdict(
            verdict,
            json!({"verdict": verdict, "not": self.not, "requestedModel": model,
                   "allowedModels": self.models,
                   "explanation": if listed { "The model is in the list." } else { "The model is not in the list." }}),
        ))
    }
}

/// Metadata values as lists: a JSON array in the string counts item by item.
fn metadata_values(value: &str) -> Vec<String> {
    if value.starts_with('[')
        && let Ok(Value::Array(items)) = serde_json::from_str::<Value>(value)
    {
        return items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect();
    }
    vec![value.to_owned()]
}

/// Models per metadata value.
type ValueModels = Vec<(String, Vec<String>)>;

/// `default.modelRules`: the models allowed by the request's metadata.
#[derive(Debug)]
pub(crate) struct ModelRules {
    defaults: Vec<String>,
    /// metadata key -> value -> models.
    rules: Vec<(String, ValueModels)>,
    not: bool,
}

impl ModelRules {
    pub(crate) fn parse(p: &Params<'_>) -> Result<Self, BuildError> {
        let Some(Value::Object(rules)) = p.get("rules") else {
            return Err(BuildError::new("is required (`{defaults, metadata}`)").in_key("rules"));
        };
        let strings = |v: &Value,
                       path: &dyn Fn(BuildError) -> BuildError|
         -> Result<Vec<String>, BuildError> {
            v.as_array()
                .and_then(|a| a.iter().map(|s| s.as_str().map(str::to_owned)).collect())
                .ok_or_else(|| path(BuildError::new("must be an array of model names")))
        };
        let defaults = match rules.get("defaults") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => strings(v, &|e| e.in_key("defaults").in_key("rules"))?,
        };
        let mut table = Vec::new();
        match rules.get("metadata") {
            None | Some(Value::Null) => {}
            Some(Value::Object(keys)) => {
                for (key, values) in keys {
                    let Value::Object(values) = values else {
                        return Err(BuildError::new("must map values to model lists")
                            .in_key(key)
                            .in_key("metadata")
                            .in_key("rules"));
                    };
                    let mut per = Vec::new();
                    for (value, models) in values {
                        let models = strings(models, &|e| {
                            e.in_key(value)
                                .in_key(key)
                                .in_key("metadata")
                                .in_key("rules")
                        })?;
                        per.push((value.clone(), models));
                    }
                    table.push((key.clone(), per));
                }
            }
            Some(_) => {
                return Err(BuildError::new("must be an object")
                    .in_key("metadata")
                    .in_key("rules"));
            }
        }
        Ok(Self {
            defaults,
            rules: table,
            not: p.not()?,
        })
    }
}

impl Check for ModelRules {
    fn run(&self, cx: &HookContext) -> Run {
        let mut allowed: BTreeSet<&str> = BTreeSet::new();
        if let Some(metadata) = cx.metadata() {
            for (key, per) in &self.rules {
                let Some(value) = metadata.get(key) else {
                    continue;
                };
                for v in metadata_values(value) {
                    for (rule_value, models) in per {
                        if *rule_value == v {
                            allowed.extend(models.iter().map(String::as_str));
                        }
                    }
                }
            }
        }
        if allowed.is_empty() {
            allowed.extend(self.defaults.iter().map(String::as_str));
        }
        if allowed.is_empty() {
            return Run::Done(Outcome::error(
                "No allowed models for this request's metadata",
            ));
        }
        let model = cx.request_field("model").and_then(Value::as_str);
        let ok = model.is_some_and(|m| allowed.contains(m));
        let verdict = ok != self.not;
        Run::Done(Outcome::verdict(
            verdict,
            json!({"verdict": verdict, "not": self.not, "requestedModel": model,
                   "allowedModels": allowed.into_iter().collect::<Vec<_>>()}),
        ))
    }
}

/// `default.requiredMetadataKeys`.
#[derive(Debug)]
pub(crate) struct RequiredMetadataKeys {
    keys: Vec<String>,
    operator: Operator,
}

impl RequiredMetadataKeys {
    pub(crate) fn parse(p: &Params<'_>) -> Result<Self, BuildError> {
        Ok(Self {
            keys: p.required_strings("metadataKeys")?,
            operator: Operator::parse(p, "operator")?,
        })
    }
}

impl Check for RequiredMetadataKeys {
    fn run(&self, cx: &HookContext) -> Run {
        let (present, missing): (Vec<&str>, Vec<&str>) = self
            .keys
            .iter()
            .map(String::as_str)
            .partition(|k| cx.metadata().is_some_and(|m| m.get(k).is_some()));
        let verdict = self.operator.verdict(present.len(), self.keys.len());
        Run::Done(Outcome::verdict(
            verdict,
            json!({"verdict": verdict, "operator": self.operator.as_str(),
                   "presentKeys": present, "missingKeys": missing}),
        ))
    }
}

/// `default.allowedRequestTypes`.
#[derive(Debug)]
pub(crate) struct AllowedRequestTypes {
    allowed: Option<Vec<String>>,
    blocked: Option<Vec<String>>,
}

impl AllowedRequestTypes {
    pub(crate) fn parse(p: &Params<'_>) -> Result<Self, BuildError> {
        let allowed = p.strings("allowedTypes", true)?;
        let blocked = p.strings("blockedTypes", true)?;
        if let (Some(a), Some(b)) = (&allowed, &blocked)
            && let Some(both) = a.iter().find(|t| b.contains(t))
        {
            return Err(
                BuildError::new(format!("`{both}` is both allowed and blocked"))
                    .in_key("blockedTypes"),
            );
        }
        Ok(Self { allowed, blocked })
    }
}

fn metadata_list(cx: &HookContext, key: &str) -> Option<Vec<String>> {
    let value = cx.metadata()?.get(key)?;
    Some(if value.starts_with('[') {
        metadata_values(value)
    } else {
        split_commas(value)
    })
}

impl Check for AllowedRequestTypes {
    fn run(&self, cx: &HookContext) -> Run {
        let allowed = self
            .allowed
            .clone()
            .or_else(|| metadata_list(cx, "supported_endpoints"));
        let blocked = self
            .blocked
            .clone()
            .or_else(|| metadata_list(cx, "blocked_endpoints"));
        if let (Some(a), Some(b)) = (&allowed, &blocked)
            && let Some(both) = a.iter().find(|t| b.contains(t))
        {
            return Run::Done(Outcome::error(format!(
                "`{both}` is both allowed and blocked"
            )));
        }
        let kind = cx.request_type().as_str();
        let (verdict, why) = match (&allowed, &blocked) {
            (_, Some(b)) if b.iter().any(|t| t == kind) => (false, "The request type is blocked."),
            (Some(a), _) if !a.iter().any(|t| t == kind) => {
                (false, "The request type is not allowed.")
            }
            _ => (true, "The request type is allowed."),
        };
        Run::Done(Outcome::verdict(
            verdict,
            json!({"verdict": verdict, "requestType": kind, "allowedTypes": allowed,
                   "blockedTypes": blocked, "explanation": why}),
        ))
    }
}

/// `default.addPrefix`: prefixes the first message of a role (or the prompt).
#[derive(Debug)]
pub(crate) struct AddPrefix {
    prefix: String,
    role: String,
    add_to_existing: bool,
    only_if_empty: bool,
}

impl AddPrefix {
    pub(crate) fn parse(p: &Params<'_>) -> Result<Self, BuildError> {
        let role = p.str("applyToRole")?.unwrap_or("user");
        if !["user", "system", "assistant"].contains(&role) {
            return Err(
                BuildError::new("must be `user`, `system` or `assistant`").in_key("applyToRole")
            );
        }
        Ok(Self {
            prefix: p.required_str("prefix")?.to_owned(),
            role: role.to_owned(),
            add_to_existing: p.bool("addToExisting", true)?,
            only_if_empty: p.bool("onlyIfEmpty", false)?,
        })
    }

    fn message(&self) -> Value {
        json!({"role": self.role, "content": self.prefix})
    }
}

impl Check for AddPrefix {
    fn run(&self, cx: &HookContext) -> Run {
        let data = json!({"prefix": self.prefix, "requestType": cx.request_type().as_str(),
                          "applyToRole": self.role, "addToExisting": self.add_to_existing,
                          "onlyIfEmpty": self.only_if_empty});
        let mut patch = Map::new();
        match cx.request_type() {
            RequestType::Complete => {
                if let Some(Value::String(prompt)) = cx.request_field("prompt") {
                    patch.insert(
                        "prompt".into(),
                        Value::String(format!("{}{prompt}", self.prefix)),
                    );
                }
            }
            RequestType::ChatComplete | RequestType::Messages => {
                let Some(Value::Array(messages)) = cx.request_field("messages") else {
                    return Run::Done(Outcome::verdict(true, data));
                };
                let mut messages = messages.clone();
                let target = messages.iter().position(|m| {
                    m.get("role").and_then(Value::as_str) == Some(self.role.as_str())
                });
                match target {
                    Some(_) if self.only_if_empty => {
                        return Run::Done(Outcome::verdict(true, data));
                    }
                    Some(i) if self.add_to_existing => match messages[i].get_mut("content") {
                        Some(Value::String(s)) => s.insert_str(0, &self.prefix),
                        Some(Value::Array(parts)) => {
                            if let Some(Value::String(t)) =
                                parts.iter_mut().find_map(|p| p.get_mut("text"))
                            {
                                t.insert_str(0, &self.prefix);
                            }
                        }
                        _ => {
                            messages[i]["content"] = Value::String(self.prefix.clone());
                        }
                    },
                    Some(i) => messages.insert(i, self.message()),
                    None if self.role == "system" => messages.insert(0, self.message()),
                    None => messages.push(self.message()),
                }
                patch.insert("messages".into(), Value::Array(messages));
            }
            RequestType::Embed => return Run::Done(Outcome::verdict(true, data)),
        }
        let outcome = Outcome::verdict(true, data);
        Run::Done(if patch.is_empty() {
            outcome
        } else {
            outcome.with_transform(Transform::Request(patch))
        })
    }
}
