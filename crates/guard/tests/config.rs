//! Hooks from JSON: the full form, the shorthands, registry names and the `guardrails` alias
//! build the same hooks; every error names its path.

use std::sync::Arc;

use bytes::Bytes;
use portcullis_core::RequestView;
use portcullis_guard::{Hook, HookContext, HookKind, Loader, RequestType};
use serde_json::{Value, json};

/// What a hook is, without its id. Checks are sorted: a shorthand object's checks come in
/// key order (JSON maps here are sorted, not insertion-ordered).
fn shape(hook: &Hook) -> Value {
    let mut checks: Vec<Value> = hook
        .checks()
        .iter()
        .map(|c| json!([c.id(), c.is_enabled(), c.fails_on_error()]))
        .collect();
    checks.sort_by_key(|c| c.to_string());
    json!({
        "kind": hook.kind().as_str(),
        "deny": hook.denies(),
        "async": hook.is_async(),
        "sequential": hook.is_sequential(),
        "feedback": hook.feedbacks().0,
        "checks": checks,
    })
}

fn verdicts(hook: &Hook, text: &str) -> Vec<(String, bool)> {
    let view = RequestView::parse(Bytes::from(
        json!({"model": "m", "messages": [{"role": "user", "content": text}]}).to_string(),
    ))
    .unwrap();
    let mut cx = HookContext::before(Arc::new(view), RequestType::ChatComplete);
    let mut v: Vec<(String, bool)> = hook
        .run_now(&mut cx)
        .checks
        .iter()
        .map(|c| (c.id.to_string(), c.verdict))
        .collect();
    v.sort();
    v
}

#[test]
fn full_and_shorthand_forms_build_the_same_hooks() {
    let loader = Loader::new();
    let full = loader
        .hooks(&json!({"before_request_hooks": [{
            "id": "guard-1", "type": "guardrail", "deny": true,
            "on_fail": {"feedback": {"value": -1, "weight": 1}},
            "checks": [
                {"id": "default.wordCount", "parameters": {"minWords": 1, "maxWords": 3, "failOnError": true}},
                {"id": "default.regexMatch", "parameters": {"rule": "secret", "not": true}, "is_enabled": false},
                {"id": "portcullis.pii", "parameters": {"kinds": ["email"]}}
            ]
        }]}))
        .unwrap();
    let short = loader
        .hooks(&json!({"input_guardrails": [{
            "deny": true,
            "on_fail": {"feedback": {"value": -1, "weight": 1}},
            "wordCount": {"minWords": 1, "maxWords": 3, "failOnError": true},
            "default.regexMatch": {"rule": "secret", "not": true, "is_enabled": false},
            "portcullis.pii": {"kinds": ["email"]}
        }]}))
        .unwrap();
    assert_eq!(full.before.len(), 1);
    assert_eq!(short.before.len(), 1);
    assert!(full.defined && short.defined);
    assert_eq!(shape(&full.before[0]), shape(&short.before[0]));
    for text in ["one two", "a b c d e", "mail ann@corp.com", "secret"] {
        assert_eq!(
            verdicts(&full.before[0], text),
            verdicts(&short.before[0], text),
            "{text}"
        );
    }
    assert_eq!(full.before[0].id(), "guard-1");
    assert!(short.before[0].id().starts_with("input_guardrail_"));
    assert_eq!(short.before[0].id().len(), "input_guardrail_".len() + 3);
}

#[test]
fn shorthand_ids_are_stable_and_hooks_keep_their_order() {
    let loader = Loader::new();
    let node = json!({
        "after_request_hooks": [{"id": "explicit", "checks": [{"id": "default.notNull"}]}],
        "output_guardrails": [{"notNull": {}}],
        "output_mutators": [{"regexReplace": {"rule": "x"}}],
        "input_mutators": [{"id": "m", "addPrefix": {"prefix": "p"}}]
    });
    let a = loader.hooks(&node).unwrap();
    let b = loader.hooks(&node).unwrap();
    let ids = |s: &portcullis_guard::HookSet| {
        s.after
            .iter()
            .map(|h| h.id().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&a), ids(&b));
    assert_eq!(ids(&a)[0], "explicit");
    assert!(ids(&a)[1].starts_with("output_guardrail_"));
    assert_eq!(a.after[2].kind(), HookKind::Mutator);
    assert_eq!(a.before[0].id(), "m");
    assert_eq!(a.before[0].kind(), HookKind::Mutator);
    // A node without hook keys defines nothing (it inherits).
    assert!(
        !loader
            .hooks(&json!({"retry": {"attempts": 2}}))
            .unwrap()
            .defined
    );
    assert!(
        loader
            .hooks(&json!({"input_guardrails": []}))
            .unwrap()
            .defined
    );
}

#[test]
fn registry_names_and_the_alias_build_the_named_hooks() {
    let loader = Loader::new();
    let registry = loader
        .registry(&json!({
            "no-pii": {"checks": [{"id": "portcullis.pii", "parameters": {}}], "deny": false},
            "short": {"deny": true, "wordCount": {"maxWords": 3}}
        }))
        .unwrap();
    let loader = loader.with_registry(registry);
    let named = loader
        .hooks(&json!({"input_guardrails": ["short"], "output_guardrails": ["no-pii"]}))
        .unwrap();
    let inline = loader.hooks(&json!({"input_guardrails": [{"id": "short", "deny": true, "wordCount": {"maxWords": 3}}]})).unwrap();
    assert_eq!(named.before[0].id(), "short");
    assert_eq!(shape(&named.before[0]), shape(&inline.before[0]));
    assert_eq!(named.after[0].id(), "no-pii");
    // Names work in the full lists too.
    let full = loader
        .hooks(&json!({"before_request_hooks": ["short"]}))
        .unwrap();
    assert_eq!(shape(&full.before[0]), shape(&inline.before[0]));

    let block = loader.hooks(&json!({"guardrails": {"input_guardrails": ["no-pii"], "output_guardrails": ["short"], "on_fail": "block"}})).unwrap();
    assert!(block.before[0].denies() && block.after[0].denies());
    let warn = loader
        .hooks(&json!({"guardrails": {"input_guardrails": ["short"], "on_fail": "warn"}}))
        .unwrap();
    assert!(!warn.before[0].denies());
    let replace = loader
        .hooks(&json!({"guardrails": {"input_guardrails": ["no-pii"], "on_fail": "replace"}}))
        .unwrap();
    assert_eq!(replace.before[0].kind(), HookKind::Mutator);
    assert!(!replace.before[0].denies());
    // `replace` redacts: the PII check rewrites instead of failing.
    assert_eq!(
        verdicts(&replace.before[0], "mail ann@corp.com"),
        [("portcullis.pii".to_owned(), true)]
    );
    assert_eq!(
        verdicts(&block.before[0], "mail ann@corp.com"),
        [("portcullis.pii".to_owned(), false)]
    );
}

#[test]
fn errors_name_their_path() {
    let loader = Loader::new().with_registry(
        Loader::new()
            .registry(&json!({"g": {"notNull": {}}}))
            .unwrap(),
    );
    let cases = [
        (
            json!({"input_guardrails": ["missing"]}),
            "input_guardrails[0]: no guardrail named `missing` in the registry",
        ),
        (
            json!({"input_guardrails": [{"wordCount": {"minWords": "x"}}]}),
            "input_guardrails[0].wordCount.minWords: must be a non-negative integer",
        ),
        (
            json!({"input_guardrails": [{"deny": "yes"}]}),
            "input_guardrails[0].deny: must be a boolean",
        ),
        (
            json!({"input_guardrails": [{"nope": {}}]}),
            "input_guardrails[0].nope.id: unknown check `default.nope`",
        ),
        (
            json!({"output_guardrails": [3]}),
            "output_guardrails[0]: must be an object or a guardrail name",
        ),
        (
            json!({"before_request_hooks": [{"checks": []}]}),
            "before_request_hooks[0].id: is required",
        ),
        (
            json!({"before_request_hooks": [{"id": "h", "type": "judge", "checks": []}]}),
            "before_request_hooks[0].type: must be `guardrail` or `mutator`",
        ),
        (
            json!({"before_request_hooks": [{"id": "h", "checks": [{"id": "default.contains", "parameters": {"words": ["a"], "operator": "most"}}]}]}),
            "before_request_hooks[0].checks[0].parameters.operator: must be `any`, `all` or `none`, got `most`",
        ),
        (
            json!({"after_request_hooks": [{"id": "h", "checks": [{"id": "default.addPrefix", "parameters": {"prefix": "p"}}]}]}),
            "after_request_hooks[0].checks[0].id: `addPrefix` runs before the request only",
        ),
        (
            json!({"after_request_hooks": {}}),
            "after_request_hooks: must be an array",
        ),
        (
            json!({"guardrails": {"input_guardrails": ["g"], "on_fail": "shout"}}),
            "guardrails.on_fail: must be `block`, `warn` or `replace`, got `shout`",
        ),
        (
            json!({"guardrails": {"output_guardrails": ["zzz"]}}),
            "guardrails.output_guardrails[0]: no guardrail named `zzz` in the registry",
        ),
        (
            json!({"input_guardrails": [{"on_success": {"feedback": {"weight": "heavy"}}}]}),
            "input_guardrails[0].on_success.feedback.weight: must be a number",
        ),
    ];
    for (node, message) in cases {
        assert_eq!(
            loader.hooks(&node).unwrap_err().to_string(),
            message,
            "{node}"
        );
    }
    let e = Loader::new()
        .registry(&json!({"bad": {"regexMatch": {"rule": "("}}}))
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("bad.regexMatch.rule: invalid pattern"),
        "{e}"
    );
}
