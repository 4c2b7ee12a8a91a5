//! Prompt templates: `POST /v1/prompts/{id}/completions` and `/render`.
//!
//! A template is the JSON text of a `messages` array whose strings hold Mustache tags
//! (`{{var}}`, sections, `{{> partial}}`), rendered with Handlebars (a superset of Mustache;
//! one difference: inside a section a name is looked up in the section's item only, reach
//! the outer context with `../name`). Every string of the request's `variables` is
//! JSON-escaped before it is substituted (Portkey's rule: the template is JSON text), so a
//! quote or a newline in a variable can never break out of its string. The rendered text
//! must parse back to a list of messages.
//!
//! The request body is then the template's `parameters` with every top-level key of the
//! client's body over them (`variables` removed, `stream` the client's), plus the rendered
//! `messages`. A missing variable or partial is a 400 naming it; a template that does not
//! compile stops start-up with its path.

use std::collections::BTreeMap;

use handlebars::{Handlebars, RenderErrorReason};
use serde_json::{Map, Value};

use crate::config::{ConfigError, Prompt};

/// The largest rendered template, in bytes.
pub(crate) const MAX_RENDERED_BYTES: usize = 1 << 20;

/// The compiled templates of a config.
#[derive(Debug)]
pub(crate) struct Templates {
    registry: Handlebars<'static>,
}

fn registry(
    prompts: &BTreeMap<String, Prompt>,
    partials: &BTreeMap<String, String>,
) -> Result<Handlebars<'static>, ConfigError> {
    let mut hb = Handlebars::new();
    // Not strict mode (it refuses Mustache's `{{#list}}` sections): a missing `{{name}}`
    // reaches `helperMissing`, which names it.
    hb.register_helper(
        "helperMissing",
        Box::new(
            |h: &handlebars::Helper<'_>,
             _: &Handlebars<'_>,
             _: &handlebars::Context,
             _: &mut handlebars::RenderContext<'_, '_>,
             _: &mut dyn handlebars::Output|
             -> handlebars::HelperResult {
                Err(RenderErrorReason::MissingVariable(Some(h.name().to_owned())).into())
            },
        ),
    );
    // Variables are escaped for JSON before rendering; nothing is escaped for HTML.
    hb.register_escape_fn(handlebars::no_escape);
    hb.register_helper("blockHelperMissing", Box::new(Section));
    for (name, text) in partials {
        hb.register_partial(name, text)
            .map_err(|e| ConfigError::new(format!("partials.{name}"), e.to_string()))?;
    }
    for (id, prompt) in prompts {
        hb.register_template_string(id, &prompt.messages)
            .map_err(|e| ConfigError::new(format!("prompts.{id}.messages"), e.to_string()))?;
    }
    Ok(hb)
}

/// A Mustache section, `{{#name}}…{{/name}}` (Handlebars wants a helper there): a list
/// renders its block once per item, an object once with it as the context, any other truthy
/// value once; a falsy or missing one renders the inverse (`{{^name}}` / `{{else}}`).
struct Section;

impl handlebars::HelperDef for Section {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &handlebars::Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc handlebars::Context,
        rc: &mut handlebars::RenderContext<'reg, 'rc>,
        out: &mut dyn handlebars::Output,
    ) -> handlebars::HelperResult {
        section(h, r, ctx, rc, out)
    }
}

fn section<'reg: 'rc, 'rc>(
    h: &handlebars::Helper<'rc>,
    r: &'reg Handlebars<'reg>,
    ctx: &'rc handlebars::Context,
    rc: &mut handlebars::RenderContext<'reg, 'rc>,
    out: &mut dyn handlebars::Output,
) -> handlebars::HelperResult {
    use handlebars::{BlockContext, Renderable};
    let value = rc.evaluate(ctx, h.name())?.as_json().clone();
    let truthy = match &value {
        Value::Null | Value::Bool(false) => false,
        Value::Array(items) => !items.is_empty(),
        Value::String(s) => !s.is_empty(),
        _ => true,
    };
    if !truthy {
        return match h.inverse() {
            Some(t) => t.render(r, ctx, rc, out),
            None => Ok(()),
        };
    }
    let Some(template) = h.template() else {
        return Ok(());
    };
    let items = match value {
        Value::Array(items) => items,
        Value::Object(_) => vec![value],
        // A truthy scalar: the block once, in the current context.
        _ => return template.render(r, ctx, rc, out),
    };
    for item in items {
        let mut block = BlockContext::new();
        block.set_base_value(item);
        rc.push_block(block);
        let rendered = template.render(r, ctx, rc, out);
        rc.pop_block();
        rendered?;
    }
    Ok(())
}

/// Compiles every template and partial now, so a bad one stops start-up with its path.
pub(crate) fn check_templates(
    prompts: &BTreeMap<String, Prompt>,
    partials: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    registry(prompts, partials).map(|_| ())
}

/// Every string in `v`, JSON-escaped (the escaped form without its quotes).
fn escaped(v: &Value) -> Value {
    match v {
        Value::String(s) => {
            let quoted = serde_json::to_string(s).expect("a string serialises");
            Value::String(quoted[1..quoted.len() - 1].to_owned())
        }
        Value::Array(items) => Value::Array(items.iter().map(escaped).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), escaped(v))).collect())
        }
        other => other.clone(),
    }
}

impl Templates {
    pub(crate) fn new(
        prompts: &BTreeMap<String, Prompt>,
        partials: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            registry: registry(prompts, partials)?,
        })
    }

    /// The request body of prompt `id` for a client's `body`; `Err` is a message for a 400.
    pub(crate) fn render(&self, id: &str, prompt: &Prompt, body: &Value) -> Result<Value, String> {
        let Value::Object(body) = body else {
            return Err("the body must be a JSON object".into());
        };
        let variables = match body.get("variables") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(v @ Value::Object(_)) => escaped(v),
            Some(_) => return Err("`variables` must be an object".into()),
        };
        let text = self
            .registry
            .render(id, &variables)
            .map_err(|e| match e.reason() {
                RenderErrorReason::MissingVariable(Some(name)) => {
                    format!("prompt `{id}`: missing variable `{name}`")
                }
                RenderErrorReason::PartialNotFound(name) => {
                    format!("prompt `{id}`: missing partial `{name}`")
                }
                _ => format!("prompt `{id}`: {e}"),
            })?;
        if text.len() > MAX_RENDERED_BYTES {
            return Err(format!(
                "prompt `{id}`: rendered to more than {MAX_RENDERED_BYTES} bytes"
            ));
        }
        let messages: Value = serde_json::from_str(&text).map_err(|e| {
            format!("prompt `{id}`: the rendered messages are not valid JSON ({e}); a partial or a triple-stache may have broken a string")
        })?;
        if !messages.is_array() {
            return Err(format!(
                "prompt `{id}`: the rendered messages are not a list"
            ));
        }
        let mut out = prompt.parameters.clone();
        out.insert("messages".into(), messages);
        for (k, v) in body {
            if k != "variables" {
                out.insert(k.clone(), v.clone());
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::json;

    fn config(prompts: Value, partials: Value) -> Result<Config, ConfigError> {
        let doc = json!({
            "providers": {"m": {"provider": "mock"}},
            "prompts": prompts,
            "partials": partials,
        });
        Config::from_value(&doc, &|_| None)
    }

    fn render(prompts: Value, partials: Value, body: Value) -> Result<Value, String> {
        let c = config(prompts, partials).unwrap();
        let t = Templates::new(&c.prompts, &c.partials).unwrap();
        t.render("p", &c.prompts["p"], &body)
    }

    #[test]
    fn variables_are_json_escaped_and_partials_render() {
        let out = render(
            json!({"p": {"messages": [
                {"role": "system", "content": "{{> tone}}"},
                {"role": "user", "content": "Summarise: {{text}} {{{text}}}"}
            ], "parameters": {"model": "gpt-4o-mini", "temperature": 0.2, "stream": true}}}),
            json!({"tone": "Be terse, {{name}}."}),
            json!({"variables": {"text": "a \"quoted\"\nline", "name": "Ann"}, "temperature": 0.9, "stream": false}),
        )
        .unwrap();
        assert_eq!(out["messages"][0]["content"], "Be terse, Ann.");
        assert_eq!(
            out["messages"][1]["content"],
            "Summarise: a \"quoted\"\nline a \"quoted\"\nline"
        );
        // The body wins over the template's parameters; `variables` is gone; the template
        // cannot make the answer stream.
        assert_eq!(out["temperature"], 0.9);
        assert_eq!(out["model"], "gpt-4o-mini");
        assert_eq!(out["stream"], false);
        assert!(out.get("variables").is_none());
    }

    #[test]
    fn sections_iterate() {
        let out = render(
            json!({"p": {"messages": [{"role": "user", "content": "{{#items}}- {{this}}\n{{/items}}"}]}}),
            json!({}),
            json!({"variables": {"items": ["a", "b"]}}),
        )
        .unwrap();
        assert_eq!(out["messages"][0]["content"], "- a\n- b\n");
    }

    #[test]
    fn missing_variables_and_partials_are_named() {
        let p = json!({"p": {"messages": [{"role": "user", "content": "{{who}} {{> footer}}"}]}});
        let err = render(p.clone(), json!({"footer": "x"}), json!({})).unwrap_err();
        assert!(err.contains("missing variable `who`"), "{err}");
        let err = config(p, json!({})).map(|c| {
            Templates::new(&c.prompts, &c.partials).unwrap().render(
                "p",
                &c.prompts["p"],
                &json!({"variables": {"who": "x"}}),
            )
        });
        let err = err.unwrap().unwrap_err();
        assert!(err.contains("missing partial `footer`"), "{err}");
    }

    #[test]
    fn bad_templates_stop_start_up_with_their_path() {
        let err = config(
            json!({"p": {"messages": [{"role": "user", "content": "{{#open}}"}]}}),
            json!({}),
        )
        .unwrap_err();
        assert_eq!(err.path(), "prompts.p.messages");
        let err = config(json!({"p": {"messages": "hi"}}), json!({})).unwrap_err();
        assert_eq!(err.path(), "prompts.p.messages");
        let err = config(
            json!({"p": {"messages": [], "virtual_key": "nope"}}),
            json!({}),
        )
        .unwrap_err();
        assert_eq!(err.path(), "prompts.p.virtual_key");
        let err = config(json!({"p": {"messages": [], "config": "nope"}}), json!({})).unwrap_err();
        assert_eq!(err.path(), "prompts.p.config");
    }
}
