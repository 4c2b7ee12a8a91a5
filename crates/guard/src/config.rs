//! Hooks from Portkey's JSON: full hook objects, the shorthands, the `guardrails` alias, and
//! a registry of named guardrails. Every error names its path.
//!
//! ```
//! use portcullis_guard::{Loader, Registry};
//! use serde_json::json;
//!
//! let loader = Loader::new();
//! let registry = loader
//!     .registry(&json!({"short-answers": {"deny": true, "wordCount": {"minWords": 1, "maxWords": 50}}}))
//!     .unwrap();
//! let loader = loader.with_registry(registry);
//!
//! // The shorthand and the registry name build the same checks.
//! let a = loader.hooks(&json!({"input_guardrails": [{"deny": true, "wordCount": {"minWords": 1, "maxWords": 50}}]})).unwrap();
//! let b = loader.hooks(&json!({"input_guardrails": ["short-answers"]})).unwrap();
//! assert_eq!(a.before[0].checks()[0].id(), b.before[0].checks()[0].id());
//! assert!(a.before[0].denies() && b.before[0].denies());
//!
//! let err = loader.hooks(&json!({"input_guardrails": ["nope"]})).unwrap_err();
//! assert_eq!(err.to_string(), "input_guardrails[0]: no guardrail named `nope` in the registry");
//! let err = loader.hooks(&json!({"before_request_hooks": [{"id": "h", "checks": [{"id": "default.regexMatch", "parameters": {"rule": "("}}]}]})).unwrap_err();
//! assert!(err.to_string().starts_with("before_request_hooks[0].checks[0].parameters.rule: invalid pattern"));
//! ```

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::BuildError;
use serde_json::{Map, Value};

use crate::check::Check;
use crate::check::json::{JsonKeys, JsonSchema};
use crate::check::params::Params;
use crate::check::request::{
    AddPrefix, AllowedRequestTypes, ModelRules, ModelWhitelist, RequiredMetadataKeys,
};
use crate::check::text::{
    Case, Contains, ContainsCode, Count, Counted, EndsWith, NotNull, RegexMatch, RegexReplace,
    ValidUrls,
};
use crate::check::webhook::{HttpClient, Log, Origins, Webhook};
use crate::context::Phase;
use crate::hook::{CheckSpec, Hook, HookKind};
use crate::pii::PiiCheck;

/// The default time a webhook or log check may take.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(3);

/// The hooks of one config node, in order: before the call and after it.
#[derive(Clone, Debug, Default)]
pub struct HookSet {
    /// `before_request_hooks`, then `input_guardrails`, then `input_mutators`, then the
    /// `guardrails` alias's input ids.
    pub before: Vec<Arc<Hook>>,
    /// The same, after the call.
    pub after: Vec<Arc<Hook>>,
    /// Whether the node named any hook key (even with empty lists): such a node replaces
    /// the hooks it would inherit.
    pub defined: bool,
}

impl HookSet {
    /// Whether there is no hook at all.
    pub fn is_empty(&self) -> bool {
        self.before.is_empty() && self.after.is_empty()
    }
}

/// Named guardrails (id -> hook definition) that configs name by plain string.
///
/// Each entry is a full hook object (with `checks`) or a shorthand object (`{"deny": true,
/// "wordCount": {…}}`); its id is its name. Entries are checked when the registry is built
/// and built again, for the phase, where they are named.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    entries: HashMap<String, Value>,
}

impl Registry {
    /// The names it holds.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Whether it holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
}

/// Builds checks and hooks from JSON: the webhook allowlist, the webhook timeout and the
/// registry of named guardrails it uses, and the HTTP client the webhook checks share.
#[derive(Clone)]
pub struct Loader {
    origins: Origins,
    webhook_timeout: Duration,
    registry: Arc<Registry>,
    client: HttpClient,
}

impl fmt::Debug for Loader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loader")
            .field("origins", &self.origins)
            .field("webhook_timeout", &self.webhook_timeout)
            .field(
                "registry",
                &self.registry.entries.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Default for Loader {
    fn default() -> Self {
        Self::new()
    }
}

const RESERVED: &[&str] = &[
    "deny",
    "on_fail",
    "on_success",
    "async",
    "id",
    "type",
    "guardrail_version_id",
    "sequential",
];

/// Ways the `guardrails` alias's `on_fail` changes the named hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alias {
    Block,
    Warn,
    Replace,
}

impl Loader {
    /// No allowed webhook origin, a 3 s webhook timeout, an empty registry.
    pub fn new() -> Self {
        Self {
            origins: Origins::new(),
            webhook_timeout: DEFAULT_WEBHOOK_TIMEOUT,
            registry: Arc::new(Registry::default()),
            client: HttpClient::new(),
        }
    }

    /// Allows webhook and log checks to call `origin` (`http://host:port`).
    ///
    /// # Errors
    /// `origin` is not an http(s) origin.
    pub fn allow_origin(mut self, origin: &str) -> Result<Self, BuildError> {
        self.origins.allow(origin)?;
        Ok(self)
    }

    /// Replaces the allowed origins.
    pub fn with_origins(mut self, origins: Origins) -> Self {
        self.origins = origins;
        self
    }

    /// The time a webhook or log check may take when it names none (`timeout`, ms).
    pub fn webhook_timeout(mut self, timeout: Duration) -> Self {
        self.webhook_timeout = timeout;
        self
    }

    /// Uses `registry` for guardrails named by string.
    pub fn with_registry(mut self, registry: Registry) -> Self {
        self.registry = Arc::new(registry);
        self
    }

    /// Reads a registry: an object of name -> hook definition, each checked now.
    ///
    /// # Errors
    /// A definition that does not build, at its path (`"pii-guard".checks[0]…`).
    pub fn registry(&self, value: &Value) -> Result<Registry, BuildError> {
        let Value::Object(map) = value else {
            return Err(BuildError::new(
                "the guardrail registry must be an object of name -> hook",
            ));
        };
        for (name, def) in map {
            self.entry(name, def, None, None)
                .map_err(|e| e.in_key(name))?;
        }
        Ok(Registry {
            entries: map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        })
    }

    /// Builds the check `id` (`default.regexMatch`, `regexMatch`, `portcullis.pii`) from
    /// its `parameters` for a hook of `phase`. `failOnError` and `is_enabled` are the
    /// hook's business (see [`Loader::hook`]).
    ///
    /// # Errors
    /// An unknown id, a check that cannot run in `phase`, or a parameter that does not
    /// check out (the path names the parameter).
    pub fn check(
        &self,
        id: &str,
        parameters: &Value,
        phase: Phase,
    ) -> Result<Arc<dyn Check>, BuildError> {
        self.build_check(id, parameters, Some(phase), false)
    }

    fn build_check(
        &self,
        id: &str,
        parameters: &Value,
        phase: Option<Phase>,
        redact: bool,
    ) -> Result<Arc<dyn Check>, BuildError> {
        let p = Params::new(parameters).map_err(|e| e.in_key("parameters"))?;
        let in_params = |e: BuildError| e.in_key("parameters");
        let name = id.strip_prefix("default.").unwrap_or(id);
        let before_only = |what: &str| -> Result<(), BuildError> {
            if phase == Some(Phase::After) {
                return Err(
                    BuildError::new(format!("`{what}` runs before the request only")).in_key("id"),
                );
            }
            Ok(())
        };
        let check: Arc<dyn Check> = if id == "portcullis.pii" {
            Arc::new(PiiCheck::parse(&p, redact).map_err(in_params)?)
        } else if !id.starts_with("default.") {
            return Err(BuildError::new(format!(
                "unknown check `{id}`: the built-in checks are `default.*` and `portcullis.pii`"
            ))
            .in_key("id"));
        } else {
            match name {
                "regexMatch" => Arc::new(RegexMatch::parse(&p).map_err(in_params)?),
                "regexReplace" => Arc::new(RegexReplace::parse(&p).map_err(in_params)?),
                "sentenceCount" => {
                    Arc::new(Count::parse(&p, Counted::Sentences).map_err(in_params)?)
                }
                "wordCount" => Arc::new(Count::parse(&p, Counted::Words).map_err(in_params)?),
                "characterCount" => {
                    Arc::new(Count::parse(&p, Counted::Characters).map_err(in_params)?)
                }
                "jsonSchema" => Arc::new(JsonSchema::parse(&p).map_err(in_params)?),
                "jsonKeys" => Arc::new(JsonKeys::parse(&p).map_err(in_params)?),
                "contains" => Arc::new(Contains::parse(&p).map_err(in_params)?),
                "validUrls" => Arc::new(ValidUrls::parse(&p).map_err(in_params)?),
                "containsCode" => Arc::new(ContainsCode::parse(&p).map_err(in_params)?),
                "alluppercase" => Arc::new(Case::parse(&p, true).map_err(in_params)?),
                "alllowercase" => Arc::new(Case::parse(&p, false).map_err(in_params)?),
                "endsWith" => Arc::new(EndsWith::parse(&p).map_err(in_params)?),
                "notNull" => Arc::new(NotNull::parse(&p).map_err(in_params)?),
                "modelWhitelist" | "modelwhitelist" => {
                    Arc::new(ModelWhitelist::parse(&p).map_err(in_params)?)
                }
                "modelRules" => Arc::new(ModelRules::parse(&p).map_err(in_params)?),
                "requiredMetadataKeys" => {
                    before_only("requiredMetadataKeys")?;
                    Arc::new(RequiredMetadataKeys::parse(&p).map_err(in_params)?)
                }
                "allowedRequestTypes" => {
                    before_only("allowedRequestTypes")?;
                    Arc::new(AllowedRequestTypes::parse(&p).map_err(in_params)?)
                }
                "addPrefix" => {
                    before_only("addPrefix")?;
                    Arc::new(AddPrefix::parse(&p).map_err(in_params)?)
                }
                "webhook" => Arc::new(
                    Webhook::parse(&p, &self.origins, &self.client, self.webhook_timeout)
                        .map_err(in_params)?,
                ),
                "log" => Arc::new(
                    Log::parse(&p, &self.origins, &self.client, self.webhook_timeout)
                        .map_err(in_params)?,
                ),
                "jwt" => {
                    return Err(BuildError::new(
                        "`default.jwt` is not supported: verify tokens before the gateway, or with a `default.webhook` check",
                    )
                    .in_key("id"));
                }
                _ => {
                    return Err(BuildError::new(format!("unknown check `{id}`")).in_key("id"));
                }
            }
        };
        Ok(check)
    }

    /// Builds one full hook object (`{id, type, checks, deny, async, sequential, on_fail,
    /// on_success}`) for `phase`.
    ///
    /// # Errors
    /// A key of the wrong type, or a check that does not build, at its path
    /// (`checks[1].parameters.rule`).
    pub fn hook(&self, value: &Value, phase: Phase) -> Result<Hook, BuildError> {
        self.full_hook(value, Some(phase), None, false)
    }

    fn full_hook(
        &self,
        value: &Value,
        phase: Option<Phase>,
        fallback_id: Option<&str>,
        redact: bool,
    ) -> Result<Hook, BuildError> {
        let Value::Object(map) = value else {
            return Err(BuildError::new("a hook must be an object"));
        };
        let id = match map.get("id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            None | Some(Value::Null) => match fallback_id {
                Some(id) => id.to_owned(),
                None => return Err(BuildError::new("is required").in_key("id")),
            },
            Some(_) => return Err(BuildError::new("must be a non-empty string").in_key("id")),
        };
        let mut hook = Hook::new(id, kind(map)?);
        read_reserved(&mut hook, map)?;
        let checks = match map.get("checks") {
            Some(Value::Array(checks)) => checks,
            None | Some(Value::Null) => {
                return Err(BuildError::new("is required (an array)").in_key("checks"));
            }
            Some(_) => return Err(BuildError::new("must be an array").in_key("checks")),
        };
        for (i, c) in checks.iter().enumerate() {
            let at = |e: BuildError| e.in_index(i).in_key("checks");
            let Value::Object(c) = c else {
                return Err(at(BuildError::new("a check must be an object")));
            };
            let id = match c.get("id") {
                Some(Value::String(s)) => s.as_str(),
                _ => return Err(at(BuildError::new("is required (a string)").in_key("id"))),
            };
            let parameters = c.get("parameters").unwrap_or(&Value::Null);
            let spec = self
                .spec(id, parameters, c.get("is_enabled"), phase, redact)
                .map_err(at)?;
            hook.checks.push(spec);
        }
        Ok(hook)
    }

    fn spec(
        &self,
        id: &str,
        parameters: &Value,
        enabled: Option<&Value>,
        phase: Option<Phase>,
        redact: bool,
    ) -> Result<CheckSpec, BuildError> {
        let check = self.build_check(id, parameters, phase, redact)?;
        let enabled = match enabled {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(BuildError::new("must be a boolean").in_key("is_enabled")),
        };
        let fail_on_error = match parameters.get("failOnError") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(BuildError::new("must be a boolean")
                    .in_key("failOnError")
                    .in_key("parameters"));
            }
        };
        Ok(CheckSpec::new(id, check)
            .enabled(enabled)
            .fail_on_error(fail_on_error))
    }

    /// Builds one shorthand object: reserved keys go on the hook, every other key is a
    /// check (`value.id ?? key`, `default.` added when it has no dot; the whole value as
    /// parameters).
    fn shorthand(
        &self,
        map: &Map<String, Value>,
        phase: Option<Phase>,
        kind_default: HookKind,
        id: String,
        redact: bool,
    ) -> Result<Hook, BuildError> {
        let kind = if map.contains_key("type") {
            kind(map)?
        } else {
            kind_default
        };
        let id = match map.get("id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            None | Some(Value::Null) => id,
            Some(_) => return Err(BuildError::new("must be a non-empty string").in_key("id")),
        };
        let mut hook = Hook::new(id, kind);
        read_reserved(&mut hook, map)?;
        for (key, value) in map {
            if RESERVED.contains(&key.as_str()) {
                continue;
            }
            let at = |e: BuildError| e.in_key(key);
            let check_id = match value.get("id").and_then(Value::as_str) {
                Some(id) => id.to_owned(),
                None => key.clone(),
            };
            let check_id = if check_id.contains('.') {
                check_id
            } else {
                format!("default.{check_id}")
            };
            if !value.is_object() {
                return Err(at(BuildError::new(
                    "a check's parameters must be an object",
                )));
            }
            // The whole value is the parameters: errors name keys inside it directly.
            let spec = self
                .spec(&check_id, value, value.get("is_enabled"), phase, redact)
                .map_err(|e| at(strip_parameters(e)))?;
            hook.checks.push(spec);
        }
        Ok(hook)
    }

    /// A registry entry: a full hook object (with `checks`) or a shorthand object.
    fn entry(
        &self,
        name: &str,
        def: &Value,
        phase: Option<Phase>,
        alias: Option<Alias>,
    ) -> Result<Hook, BuildError> {
        let redact = alias == Some(Alias::Replace);
        let Value::Object(map) = def else {
            return Err(BuildError::new("a guardrail must be an object"));
        };
        let mut hook = if map.contains_key("checks") {
            self.full_hook(def, phase, Some(name), redact)?
        } else {
            self.shorthand(map, phase, HookKind::Guardrail, name.to_owned(), redact)?
        };
        // A named guardrail answers by its name.
        hook.id = name.into();
        match alias {
            Some(Alias::Block) => hook.deny = true,
            Some(Alias::Warn) => hook.deny = false,
            Some(Alias::Replace) => {
                hook.deny = false;
                hook.kind = HookKind::Mutator;
            }
            None => {}
        }
        Ok(hook)
    }

    fn named(&self, name: &str, phase: Phase, alias: Option<Alias>) -> Result<Hook, BuildError> {
        let def = self.registry.entries.get(name).ok_or_else(|| {
            BuildError::new(format!("no guardrail named `{name}` in the registry"))
        })?;
        self.entry(name, def, Some(phase), alias)
    }

    /// Reads the hooks of a config node: `before_request_hooks`, `after_request_hooks`,
    /// `input_guardrails`, `output_guardrails`, `input_mutators`, `output_mutators` and
    /// the `guardrails` alias. Other keys are ignored (they belong to the rest of the
    /// config).
    ///
    /// # Errors
    /// Anything that does not build, at its path from the node
    /// (`input_guardrails[0].wordCount.minWords`).
    pub fn hooks(&self, node: &Value) -> Result<HookSet, BuildError> {
        let Value::Object(node) = node else {
            return Err(BuildError::new("a config node must be an object"));
        };
        let mut set = HookSet::default();
        for (key, phase) in [
            ("before_request_hooks", Phase::Before),
            ("after_request_hooks", Phase::After),
        ] {
            let Some(list) = self.list(node, key, &mut set)? else {
                continue;
            };
            for (i, item) in list.iter().enumerate() {
                let hook = match item {
                    Value::String(name) => self.named(name, phase, None),
                    _ => self.hook(item, phase),
                }
                .map_err(|e| e.in_index(i).in_key(key))?;
                push(&mut set, phase, hook);
            }
        }
        for (key, phase, kind, prefix) in [
            (
                "input_guardrails",
                Phase::Before,
                HookKind::Guardrail,
                "input",
            ),
            ("input_mutators", Phase::Before, HookKind::Mutator, "input"),
            (
                "output_guardrails",
                Phase::After,
                HookKind::Guardrail,
                "output",
            ),
            ("output_mutators", Phase::After, HookKind::Mutator, "output"),
        ] {
            let Some(list) = self.list(node, key, &mut set)? else {
                continue;
            };
            for (i, item) in list.iter().enumerate() {
                let hook = match item {
                    Value::String(name) => self.named(name, phase, None),
                    Value::Object(map) => {
                        let id = generated_id(prefix, key, i, item);
                        self.shorthand(map, Some(phase), kind, id, false)
                    }
                    _ => Err(BuildError::new("must be an object or a guardrail name")),
                }
                .map_err(|e| e.in_index(i).in_key(key))?;
                push(&mut set, phase, hook);
            }
        }
        if let Some(alias) = node.get("guardrails").filter(|v| !v.is_null()) {
            set.defined = true;
            self.alias(alias, &mut set)
                .map_err(|e| e.in_key("guardrails"))?;
        }
        Ok(set)
    }

    fn list<'a>(
        &self,
        node: &'a Map<String, Value>,
        key: &str,
        set: &mut HookSet,
    ) -> Result<Option<&'a Vec<Value>>, BuildError> {
        match node.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(list)) => {
                set.defined = true;
                Ok(Some(list))
            }
            Some(_) => Err(BuildError::new("must be an array").in_key(key)),
        }
    }

    /// `{"input_guardrails": [names], "output_guardrails": [names], "on_fail": "block" |
    /// "warn" | "replace"}`: an alias Portkey's guides show and Portkey itself ignores.
    fn alias(&self, value: &Value, set: &mut HookSet) -> Result<(), BuildError> {
        let Value::Object(map) = value else {
            return Err(BuildError::new("must be an object"));
        };
        let alias = match map.get("on_fail") {
            None | Some(Value::Null) => Alias::Block,
            Some(Value::String(s)) => match s.as_str() {
                "block" => Alias::Block,
                "warn" => Alias::Warn,
                "replace" => Alias::Replace,
                other => {
                    return Err(BuildError::new(format!(
                        "must be `block`, `warn` or `replace`, got `{other}`"
                    ))
                    .in_key("on_fail"));
                }
            },
            Some(_) => return Err(BuildError::new("must be a string").in_key("on_fail")),
        };
        for key in map.keys() {
            if !["input_guardrails", "output_guardrails", "on_fail"].contains(&key.as_str()) {
                return Err(BuildError::new(
                    "unknown key (expected `input_guardrails`, `output_guardrails`, `on_fail`)",
                )
                .in_key(key));
            }
        }
        for (key, phase) in [
            ("input_guardrails", Phase::Before),
            ("output_guardrails", Phase::After),
        ] {
            let list = match map.get(key) {
                None | Some(Value::Null) => continue,
                Some(Value::Array(list)) => list,
                Some(_) => {
                    return Err(BuildError::new("must be an array of guardrail names").in_key(key));
                }
            };
            for (i, item) in list.iter().enumerate() {
                let at = |e: BuildError| e.in_index(i).in_key(key);
                let Value::String(name) = item else {
                    return Err(at(BuildError::new("must be a guardrail name")));
                };
                let hook = self.named(name, phase, Some(alias)).map_err(at)?;
                push(set, phase, hook);
            }
        }
        Ok(())
    }
}

fn push(set: &mut HookSet, phase: Phase, hook: Hook) {
    match phase {
        Phase::Before => set.before.push(Arc::new(hook)),
        Phase::After => set.after.push(Arc::new(hook)),
    }
}

/// Shorthand errors name keys inside the check's value, not under `parameters`.
fn strip_parameters(e: BuildError) -> BuildError {
    match e.path().strip_prefix("parameters") {
        Some(rest) => {
            let rest = rest.strip_prefix('.').unwrap_or(rest);
            BuildError::at(rest, e.message())
        }
        None => e,
    }
}

fn kind(map: &Map<String, Value>) -> Result<HookKind, BuildError> {
    match map.get("type") {
        None | Some(Value::Null) => Ok(HookKind::Guardrail),
        Some(Value::String(s)) if s == "guardrail" => Ok(HookKind::Guardrail),
        Some(Value::String(s)) if s == "mutator" => Ok(HookKind::Mutator),
        Some(_) => Err(BuildError::new("must be `guardrail` or `mutator`").in_key("type")),
    }
}

fn read_reserved(hook: &mut Hook, map: &Map<String, Value>) -> Result<(), BuildError> {
    let flag = |key: &str| -> Result<bool, BuildError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(BuildError::new("must be a boolean").in_key(key)),
        }
    };
    hook.deny = flag("deny")?;
    hook.is_async = flag("async")?;
    hook.sequential = flag("sequential")?;
    let feedback = |key: &str| -> Result<Option<Value>, BuildError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(o)) => match o.get("feedback") {
                None | Some(Value::Null) => Ok(None),
                Some(f @ Value::Object(fb)) => {
                    for k in ["value", "weight"] {
                        if fb.get(k).is_some_and(|v| !v.is_number() && !v.is_null()) {
                            return Err(BuildError::new("must be a number")
                                .in_key(k)
                                .in_key("feedback")
                                .in_key(key));
                        }
                    }
                    Ok(Some(f.clone()))
                }
                Some(_) => Err(BuildError::new("must be an object")
                    .in_key("feedback")
                    .in_key(key)),
            },
            Some(_) => Err(BuildError::new("must be an object").in_key(key)),
        }
    };
    hook.on_fail = feedback("on_fail")?;
    hook.on_success = feedback("on_success")?;
    Ok(())
}

/// `input_guardrail_` / `output_guardrail_` and three base-36 characters, derived from the
/// hook's place and content so an id is the same at every start (Portkey draws them at
/// random).
fn generated_id(prefix: &str, key: &str, index: usize, value: &Value) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    index.hash(&mut h);
    value.to_string().hash(&mut h);
    let mut n = h.finish() % (36 * 36 * 36);
    let mut tail = [b'0'; 3];
    for c in tail.iter_mut().rev() {
        let d = (n % 36) as u8;
        *c = if d < 10 { b'0' + d } else { b'a' + d - 10 };
        n /= 36;
    }
    format!(
        "{prefix}_guardrail_{}",
        std::str::from_utf8(&tail).expect("ASCII")
    )
}
