//! Saved configs and prompt templates: what Portkey's users keep in its dashboard and refer
//! to by id, kept in the server's file (and so in git).
//!
//! ```json
//! "configs": {"support-v2": {"strategy": {"mode": "fallback"}, "targets": [...]}},
//! "prompts": {
//!   "summarise": {
//!     "messages": [{"role": "system", "content": "{{> tone}}"},
//!                  {"role": "user", "content": "Summarise: {{text}}"}],
//!     "parameters": {"model": "gpt-4o-mini", "temperature": 0.2},
//!     "config": "support-v2"
//!   }
//! },
//! "partials": {"tone": "You are terse."}
//! ```
//!
//! `configs` may also be a directory (a string): each `ID.json` in it is the config `ID`.
//! A request sends `x-portkey-config: support-v2`; an unknown id is a 400 naming it.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::reader::{ConfigError, Obj, Result, join};
use super::{Node, Origin, Provider};

/// The longest id of a saved config or a prompt.
const MAX_ID_LEN: usize = 128;

fn check_id(id: &str, path: &str, what: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > MAX_ID_LEN
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        || id.starts_with('{')
    {
        return Err(ConfigError::new(
            path,
            format!("{what} id is 1 to {MAX_ID_LEN} letters, digits, `-`, `_` or `.`"),
        ));
    }
    Ok(())
}

/// `configs`: id -> routing tree, read like the file's own `config`.
pub(crate) fn parse_configs(
    v: &Value,
    path: &str,
    providers: &BTreeMap<String, Provider>,
    guards: &portcullis_guard::Loader,
) -> Result<BTreeMap<String, Node>> {
    let mut out = BTreeMap::new();
    match v {
        Value::Object(map) => {
            for (id, tree) in map {
                let at = join(path, id);
                check_id(id, &at, "a config")?;
                out.insert(
                    id.clone(),
                    Node::parse_guarded(tree, &at, providers, Origin::File, guards)?,
                );
            }
        }
        Value::String(dir) => {
            let entries = std::fs::read_dir(Path::new(dir))
                .map_err(|e| ConfigError::new(path, format!("cannot read directory {dir}: {e}")))?;
            let mut files: Vec<_> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            files.sort();
            for file in files {
                let id = file
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
                    .to_owned();
                let at = format!("{path}({})", file.display());
                check_id(&id, &at, "a config")?;
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| ConfigError::new(&at, format!("cannot read: {e}")))?;
                let tree: Value = serde_json::from_str(&text)
                    .map_err(|e| ConfigError::new(&at, format!("not valid JSON: {e}")))?;
                out.insert(
                    id.clone(),
                    Node::parse_guarded(&tree, &join(path, &id), providers, Origin::File, guards)?,
                );
            }
        }
        _ => {
            return Err(ConfigError::new(
                path,
                "must be an object of id -> config, or a directory of ID.json files",
            ));
        }
    }
    Ok(out)
}

/// Where a prompt's request goes.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub enum PromptRoute {
    /// The file's routing tree.
    Default,
    /// A provider of the file (`virtual_key`).
    Provider(String),
    /// A saved config, by id.
    Saved(String),
    /// A tree of its own (`config` given as an object).
    Tree(Box<Node>),
}

/// A prompt template.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub struct Prompt {
    /// `messages`, as the text of a JSON array with Mustache tags in its strings.
    pub messages: String,
    /// `parameters`: the request's defaults (the body's keys win; `stream` is the client's).
    pub parameters: Map<String, Value>,
    /// Where it goes.
    pub route: PromptRoute,
}

/// `prompts`: id -> `{"messages", "parameters", "virtual_key" | "config"}`.
pub(crate) fn parse_prompts(
    v: &Value,
    path: &str,
    providers: &BTreeMap<String, Provider>,
    configs: &BTreeMap<String, Node>,
    guards: &portcullis_guard::Loader,
) -> Result<BTreeMap<String, Prompt>> {
    let map = v
        .as_object()
        .ok_or_else(|| ConfigError::new(path, "must be an object of id -> prompt"))?;
    let mut out = BTreeMap::new();
    for (id, prompt) in map {
        let at = join(path, id);
        check_id(id, &at, "a prompt")?;
        let mut obj = Obj::new(prompt, &at)?;
        let (messages, mpath) = obj.get("messages")?.ok_or_else(|| {
            ConfigError::new(join(&at, "messages"), "missing (the messages template)")
        })?;
        if !messages.is_array() {
            return Err(ConfigError::new(mpath, "must be a list of messages"));
        }
        let parameters = match obj.get("parameters")? {
            None => Map::new(),
            Some((Value::Object(p), _)) => {
                let mut p = p.clone();
                // The client decides whether its answer streams.
                p.remove("stream");
                p.remove("stream_options");
                p
            }
            Some((_, ppath)) => return Err(ConfigError::new(ppath, "must be an object")),
        };
        let vk = obj.str("virtual_key")?;
        let config = obj.get("config")?;
        let route = match (vk, config) {
            (Some(_), Some((_, cpath))) => {
                return Err(ConfigError::new(
                    cpath,
                    "give virtual_key or config, not both",
                ));
            }
            (Some((name, vpath)), None) => {
                if !providers.contains_key(name) {
                    return Err(ConfigError::new(
                        vpath,
                        format!("unknown provider `{name}`"),
                    ));
                }
                PromptRoute::Provider(name.to_owned())
            }
            (None, Some((Value::String(id), cpath))) => {
                if !configs.contains_key(id) {
                    return Err(ConfigError::new(
                        cpath,
                        format!("unknown saved config `{id}`"),
                    ));
                }
                PromptRoute::Saved(id.clone())
            }
            (None, Some((tree, cpath))) => PromptRoute::Tree(Box::new(Node::parse_guarded(
                tree,
                &cpath,
                providers,
                Origin::File,
                guards,
            )?)),
            (None, None) => PromptRoute::Default,
        };
        obj.finish(" (expected messages, parameters, virtual_key, config)")?;
        out.insert(
            id.clone(),
            Prompt {
                messages: serde_json::to_string(messages).expect("JSON serialises"),
                parameters,
                route,
            },
        );
    }
    Ok(out)
}

/// `partials`: name -> template text.
pub(crate) fn parse_partials(v: &Value, path: &str) -> Result<BTreeMap<String, String>> {
    let map = v
        .as_object()
        .ok_or_else(|| ConfigError::new(path, "must be an object of name -> template text"))?;
    map.iter()
        .map(|(name, text)| {
            let at = join(path, name);
            check_id(name, &at, "a partial")?;
            text.as_str()
                .map(|t| (name.clone(), t.to_owned()))
                .ok_or_else(|| ConfigError::new(at, "must be a string"))
        })
        .collect()
}
