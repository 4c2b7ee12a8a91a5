//! Each built-in check: pass, fail, error, `not`, defaults, and Portkey's example parameters.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use portcullis_core::RequestView;
use portcullis_core::context::Metadata;
use portcullis_guard::{HookContext, Loader, Outcome, Phase, RequestType, Run, Transform};
use serde_json::{Value, json};

fn view(body: Value) -> Arc<RequestView> {
    Arc::new(RequestView::parse(Bytes::from(body.to_string())).unwrap())
}

fn before(text: &str) -> HookContext {
    HookContext::before(
        view(
            json!({"model": "gpt-4o", "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": text}]}),
        ),
        RequestType::ChatComplete,
    )
}

fn after(text: &str) -> HookContext {
    HookContext::after(
        view(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "q"}]})),
        RequestType::ChatComplete,
        json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}),
    )
}

fn run_in(id: &str, params: Value, cx: &HookContext) -> Outcome {
    let phase = cx.phase();
    let check = Loader::new().check(id, &params, phase).unwrap();
    match check.run(cx) {
        Run::Done(o) => o,
        Run::Pending(_) => panic!("{id} did I/O"),
    }
}

fn verdict(id: &str, params: Value, text: &str) -> bool {
    let o = run_in(id, params, &after(text));
    assert!(o.error.is_none(), "{id} erred: {:?}", o.error);
    o.verdict
}

fn errs(id: &str, params: Value, text: &str) -> bool {
    run_in(id, params, &after(text)).error.is_some()
}

fn load_error(id: &str, params: Value) -> String {
    Loader::new()
        .check(id, &params, Phase::After)
        .unwrap_err()
        .to_string()
}

#[test]
fn regex_match() {
    let id = "default.regexMatch";
    // Portkey's example: a rule that must match.
    assert!(verdict(
        id,
        json!({"rule": "\\d{3}-\\d{3}-\\d{4}"}),
        "call 555-123-4567"
    ));
    assert!(!verdict(
        id,
        json!({"rule": "\\d{3}-\\d{3}-\\d{4}"}),
        "no number"
    ));
    assert!(!verdict(
        id,
        json!({"rule": "secret", "not": true}),
        "a secret"
    ));
    assert!(verdict(
        id,
        json!({"rule": "secret", "not": true}),
        "nothing"
    ));
    // JavaScript features: lookahead and backreferences.
    assert!(verdict(id, json!({"rule": "(\\w)\\1(?=o)"}), "hello"));
    let o = run_in(id, json!({"rule": "(?<word>w\\w+)"}), &after("héllo world"));
    assert_eq!(o.data["matchDetails"]["matchedText"], "world");
    assert_eq!(o.data["matchDetails"]["index"], 6, "UTF-16 index");
    assert_eq!(o.data["matchDetails"]["groups"]["word"], "world");
    assert_eq!(o.data["matchDetails"]["captures"], json!(["world"]));
    assert!(errs(id, json!({"rule": "x"}), ""));
    assert_eq!(
        load_error(id, json!({})),
        "parameters.rule: is required (a non-empty string)"
    );
    assert!(load_error(id, json!({"rule": "(a"})).starts_with("parameters.rule: invalid pattern"));
    // A runaway pattern errs (and so passes by default), it never hangs.
    assert!(errs(
        id,
        json!({"rule": "^(a+)+\\1$"}),
        &format!("{}b", "a".repeat(64))
    ));
}

#[test]
fn regex_replace() {
    let id = "default.regexReplace";
    let o = run_in(
        id,
        json!({"rule": "/\\d{4}/g"}),
        &before("pin 1234 and 5678"),
    );
    assert!(o.verdict);
    assert_eq!(
        o.transform,
        Some(Transform::Parts(vec![
            "pin [REDACTED] and [REDACTED]".into()
        ]))
    );
    // Without `g`, the first match only; `$1` expands.
    let o = run_in(
        id,
        json!({"rule": "(\\d)\\d{3}", "redactText": "$1***"}),
        &before("1234 5678"),
    );
    assert_eq!(
        o.transform,
        Some(Transform::Parts(vec!["1*** 5678".into()]))
    );
    let o = run_in(
        id,
        json!({"rule": "/x/", "failOnDetection": true}),
        &before("x"),
    );
    assert!(!o.verdict);
    let o = run_in(id, json!({"rule": "/x/i"}), &before("nothing"));
    assert!(o.verdict && o.transform.is_none());
}

#[test]
fn sentence_count() {
    let id = "default.sentenceCount";
    assert!(verdict(
        id,
        json!({"minSentences": 1, "maxSentences": 2}),
        "Hi. There!"
    ));
    assert!(!verdict(
        id,
        json!({"minSentences": 1, "maxSentences": 2}),
        "Hi"
    ));
    // Portkey's count is the number of terminators: "..." is three.
    let o = run_in(
        id,
        json!({"minSentences": 0, "maxSentences": 5}),
        &after("..."),
    );
    assert_eq!(o.data["sentenceCount"], 3);
    assert!(verdict(id, json!({"minSentences": 3, "not": true}), "One."));
    // Empty text counts zero sentences; missing bounds take the manifest defaults.
    assert!(verdict(id, json!({}), ""));
    assert_eq!(
        load_error(id, json!({"minSentences": "1"})),
        "parameters.minSentences: must be a number"
    );
}

#[test]
fn word_count() {
    let id = "default.wordCount";
    // Portkey's shorthand example.
    assert!(verdict(
        id,
        json!({"minWords": 1, "maxWords": 50}),
        "  a few words here "
    ));
    assert!(!verdict(id, json!({"minWords": 5}), "two words"));
    assert!(verdict(
        id,
        json!({"minWords": 5, "not": true}),
        "two words"
    ));
    assert!(errs(id, json!({"minWords": 1}), ""));
    assert!(load_error(id, json!({"maxWords": 1.5})).contains("non-negative integer"));
}

#[test]
fn character_count() {
    let id = "default.characterCount";
    // UTF-16 units: the emoji counts two.
    let o = run_in(
        id,
        json!({"minCharacters": 3, "maxCharacters": 3}),
        &after("a😀"),
    );
    assert!(o.verdict);
    assert_eq!(o.data["characterCount"], 3);
    assert!(!verdict(id, json!({"maxCharacters": 2}), "abc"));
    assert!(errs(id, json!({}), ""));
}

#[test]
fn json_schema() {
    let id = "default.jsonSchema";
    let schema = json!({"schema": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}});
    assert!(verdict(
        id,
        schema.clone(),
        "Here:\n```json\n{\"name\": \"Ann\"}\n```"
    ));
    assert!(verdict(
        id,
        schema.clone(),
        "prefix {\"name\": \"Ann\", \"nested\": {\"a\": 1}} suffix"
    ));
    assert!(!verdict(id, schema.clone(), "{\"age\": 3}"));
    let mut not = schema.clone();
    not["not"] = json!(true);
    assert!(verdict(id, not.clone(), "{\"age\": 3}"));
    // No JSON at all fails, even with `not`.
    assert!(!verdict(id, not, "no json"));
    assert!(
        load_error(id, json!({"schema": {"$ref": "#/x"}})).starts_with("parameters.schema.$ref")
    );
    assert_eq!(
        load_error(id, json!({})),
        "parameters.schema: is required (a JSON Schema object)"
    );
}

#[test]
fn json_keys() {
    let id = "default.jsonKeys";
    let text = "```json\n{\"a\": 1, \"b\": 2}\n```";
    assert!(verdict(
        id,
        json!({"keys": ["a", "c"], "operator": "any"}),
        text
    ));
    assert!(!verdict(
        id,
        json!({"keys": ["a", "c"], "operator": "all"}),
        text
    ));
    assert!(verdict(
        id,
        json!({"keys": ["c"], "operator": "none"}),
        text
    ));
    assert!(!verdict(
        id,
        json!({"keys": ["a"], "operator": "any"}),
        "none here"
    ));
    assert!(
        load_error(id, json!({"keys": ["a"], "operator": "some"}))
            .starts_with("parameters.operator: must be")
    );
    assert!(load_error(id, json!({"keys": [], "operator": "any"})).starts_with("parameters.keys"));
}

#[test]
fn contains() {
    let id = "default.contains";
    assert!(verdict(
        id,
        json!({"words": ["cat", "dog"], "operator": "any"}),
        "a cat"
    ));
    assert!(!verdict(
        id,
        json!({"words": ["cat", "dog"], "operator": "all"}),
        "a cat"
    ));
    assert!(
        !verdict(id, json!({"words": ["Cat"], "operator": "any"}), "a cat"),
        "case-sensitive"
    );
    assert!(verdict(
        id,
        json!({"words": ["dog"], "operator": "none"}),
        "a cat"
    ));
    assert!(load_error(id, json!({"words": ["x"]})).contains("operator"));
}

#[tokio::test]
async fn valid_urls() {
    let id = "default.validUrls";
    // IP literals need no lookup; `localhost` resolves without a network.
    assert!(verdict(
        id,
        json!({}),
        "see http://127.0.0.1:8080/x and https://10.0.0.1/y."
    ));
    assert!(!verdict(id, json!({}), "see https://bad_host/x"));
    assert!(verdict(id, json!({"not": true}), "see https://bad_host/x"));
    // No URL fails, even with `not`.
    assert!(!verdict(id, json!({"not": true}), "no links"));
    let check = Loader::new()
        .check(id, &json!({"onlyDNS": true}), Phase::After)
        .unwrap();
    let Run::Pending(f) = check.run(&after("go to http://localhost:1/")) else {
        panic!("a lookup")
    };
    assert!(f.await.verdict);
}

#[test]
fn contains_code() {
    let id = "default.containsCode";
    let text = "Try:\n```py\nprint(1)\n```";
    assert!(verdict(id, json!({"format": "Python"}), text));
    assert!(!verdict(id, json!({"format": "Rust"}), text));
    assert!(verdict(id, json!({"format": "Rust", "not": true}), text));
    // No fenced block: the verdict is `not`.
    assert!(!verdict(id, json!({"format": "SQL"}), "SELECT 1"));
    assert!(verdict(
        id,
        json!({"format": "SQL", "not": true}),
        "SELECT 1"
    ));
    assert!(
        load_error(id, json!({"format": "Cobol"})).starts_with("parameters.format: unknown format")
    );
}

#[test]
fn case_checks() {
    assert!(verdict(
        "default.alluppercase",
        json!({}),
        "HELLO, WORLD 42"
    ));
    assert!(!verdict("default.alluppercase", json!({}), "Hello"));
    assert!(verdict(
        "default.alluppercase",
        json!({"not": true}),
        "Hello"
    ));
    assert!(verdict("default.alllowercase", json!({}), "héllo 42"));
    assert!(
        verdict("default.alllowercase", json!({}), "42 ?"),
        "no letters passes"
    );
    assert!(errs("default.alllowercase", json!({}), ""));
}

#[test]
fn ends_with() {
    let id = "default.endsWith";
    assert!(verdict(id, json!({"suffix": "Thanks"}), "Bye. Thanks"));
    assert!(verdict(id, json!({"suffix": "Thanks"}), "Bye. Thanks."));
    assert!(!verdict(id, json!({"suffix": "Thanks"}), "Thanks!"));
    assert!(verdict(
        id,
        json!({"suffix": "Thanks", "not": true}),
        "Thanks!"
    ));
    assert!(errs(id, json!({"suffix": "x"}), ""));
    assert!(load_error(id, json!({"suffix": ""})).starts_with("parameters.suffix"));
}

#[test]
fn not_null() {
    assert!(verdict("default.notNull", json!({}), "x"));
    assert!(!verdict("default.notNull", json!({}), "   "));
    assert!(verdict("default.notNull", json!({"not": true}), ""));
    let cx = HookContext::after(
        view(json!({"model": "m"})),
        RequestType::ChatComplete,
        json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": null}}]}),
    );
    assert!(!run_in("default.notNull", json!({}), &cx).verdict);
}

fn request_cx(model: &str, metadata: &[(&str, &str)]) -> HookContext {
    let map: BTreeMap<String, String> = metadata
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    HookContext::before(
        view(json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})),
        RequestType::ChatComplete,
    )
    .with_metadata(Metadata::new(map))
}

#[test]
fn model_whitelist_both_spellings() {
    for id in ["default.modelWhitelist", "default.modelwhitelist"] {
        let p = json!({"models": ["gpt-4o", "gpt-4o-mini"]});
        assert!(run_in(id, p.clone(), &request_cx("gpt-4o", &[])).verdict);
        assert!(!run_in(id, p, &request_cx("o1", &[])).verdict);
        assert!(
            run_in(
                id,
                json!({"models": ["gpt-4o"], "not": true}),
                &request_cx("o1", &[])
            )
            .verdict
        );
    }
}

#[test]
fn model_rules() {
    let id = "default.modelRules";
    let p = json!({"rules": {"defaults": ["gpt-4o-mini"], "metadata": {"tier": {"pro": ["gpt-4o"], "free": ["gpt-4o-mini"]}, "team": {"ml": ["o1"]}}}});
    assert!(run_in(id, p.clone(), &request_cx("gpt-4o", &[("tier", "pro")])).verdict);
    assert!(!run_in(id, p.clone(), &request_cx("gpt-4o", &[("tier", "free")])).verdict);
    // Every matching key counts; array values count item by item.
    assert!(
        run_in(
            id,
            p.clone(),
            &request_cx("o1", &[("tier", "free"), ("team", "ml")])
        )
        .verdict
    );
    assert!(
        run_in(
            id,
            p.clone(),
            &request_cx("gpt-4o", &[("tier", "[\"free\",\"pro\"]")])
        )
        .verdict
    );
    // No match: the defaults.
    assert!(run_in(id, p.clone(), &request_cx("gpt-4o-mini", &[])).verdict);
    let empty = json!({"rules": {"metadata": {"tier": {"pro": ["gpt-4o"]}}}});
    assert!(
        run_in(id, empty, &request_cx("gpt-4o", &[]))
            .error
            .is_some()
    );
}

#[test]
fn required_metadata_keys() {
    let id = "default.requiredMetadataKeys";
    let cx = request_cx("m", &[("team", "a")]);
    assert!(
        run_in(
            id,
            json!({"metadataKeys": ["team", "env"], "operator": "any"}),
            &cx
        )
        .verdict
    );
    assert!(
        !run_in(
            id,
            json!({"metadataKeys": ["team", "env"], "operator": "all"}),
            &cx
        )
        .verdict
    );
    assert!(
        run_in(
            id,
            json!({"metadataKeys": ["env"], "operator": "none"}),
            &cx
        )
        .verdict
    );
    // After the call it is a config error here (Portkey: an error that passes).
    let e = Loader::new()
        .check(
            id,
            &json!({"metadataKeys": ["a"], "operator": "all"}),
            Phase::After,
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "id: `requiredMetadataKeys` runs before the request only"
    );
}

#[test]
fn allowed_request_types() {
    let id = "default.allowedRequestTypes";
    let cx = request_cx("m", &[]);
    assert!(run_in(id, json!({"allowedTypes": ["chatComplete", "embed"]}), &cx).verdict);
    assert!(!run_in(id, json!({"allowedTypes": "embed, complete"}), &cx).verdict);
    assert!(!run_in(id, json!({"blockedTypes": ["chatComplete"]}), &cx).verdict);
    assert!(
        run_in(id, json!({}), &cx).verdict,
        "nothing configured passes"
    );
    // From metadata when the parameters say nothing; a type in both lists is an error.
    let cx = request_cx("m", &[("blocked_endpoints", "chatComplete")]);
    assert!(!run_in(id, json!({}), &cx).verdict);
    let cx = request_cx(
        "m",
        &[
            ("supported_endpoints", "chatComplete"),
            ("blocked_endpoints", "chatComplete"),
        ],
    );
    assert!(run_in(id, json!({}), &cx).error.is_some());
    let e = Loader::new()
        .check(
            id,
            &json!({"allowedTypes": ["embed"], "blockedTypes": ["embed"]}),
            Phase::Before,
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "parameters.blockedTypes: `embed` is both allowed and blocked"
    );
}

#[test]
fn add_prefix() {
    let id = "default.addPrefix";
    let cx = before("question");
    let transform = |o: Outcome| match o.transform {
        Some(Transform::Request(patch)) => patch,
        other => panic!("{other:?}"),
    };
    let patch = transform(run_in(id, json!({"prefix": "Be kind. "}), &cx));
    assert_eq!(patch["messages"][1]["content"], "Be kind. question");
    let patch = transform(run_in(
        id,
        json!({"prefix": "P", "applyToRole": "system", "addToExisting": false}),
        &cx,
    ));
    assert_eq!(
        patch["messages"][0],
        json!({"role": "system", "content": "P"})
    );
    assert_eq!(patch["messages"][1]["content"], "sys");
    let o = run_in(
        id,
        json!({"prefix": "P", "applyToRole": "system", "onlyIfEmpty": true}),
        &cx,
    );
    assert!(o.verdict && o.transform.is_none());
    let patch = transform(run_in(
        id,
        json!({"prefix": "A", "applyToRole": "assistant"}),
        &cx,
    ));
    assert_eq!(
        patch["messages"][2],
        json!({"role": "assistant", "content": "A"})
    );
    let completion = HookContext::before(
        view(json!({"model": "m", "prompt": "go"})),
        RequestType::Complete,
    );
    let patch = transform(run_in(id, json!({"prefix": ">> "}), &completion));
    assert_eq!(patch["prompt"], ">> go");
}

#[test]
fn pii() {
    let id = "portcullis.pii";
    assert!(!verdict(id, json!({}), "mail ann@corp.com"));
    assert!(verdict(id, json!({}), "nothing personal"));
    assert!(verdict(id, json!({"kinds": ["ssn"]}), "mail ann@corp.com"));
    let o = run_in(
        id,
        json!({"redact": true}),
        &before("ssn 123-45-6789, ip 10.0.0.1"),
    );
    assert!(o.verdict);
    assert_eq!(
        o.transform,
        Some(Transform::Parts(vec![
            "ssn [SSN_1], ip [IP_ADDRESS_1]".into()
        ]))
    );
    assert_eq!(o.data["detected"], json!({"ssn": 1, "ip_address": 1}));
    assert!(
        load_error(id, json!({"kinds": ["dna"]})).starts_with("parameters.kinds[0]: unknown kind")
    );
}

#[test]
fn unknown_and_refused_checks() {
    assert_eq!(
        load_error("default.nope", json!({})),
        "id: unknown check `default.nope`"
    );
    assert!(load_error("portkey.pii", json!({})).contains("built-in checks"));
    assert!(load_error("default.jwt", json!({"jwksUri": "https://x"})).contains("not supported"));
    assert_eq!(
        load_error(
            "default.webhook",
            json!({"webhookURL": "http://evil.example/x"})
        ),
        "parameters.webhookURL: `http://evil.example/x` is not on an allowed origin (the server's webhook allowlist)"
    );
}

#[test]
fn text_of_each_request_shape() {
    let parts = HookContext::before(
        view(
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}]}]}),
        ),
        RequestType::ChatComplete,
    );
    assert_eq!(parts.text(), "a\n\nb");
    let embed = HookContext::before(
        view(json!({"model": "m", "input": ["x", "y"]})),
        RequestType::Embed,
    );
    assert_eq!(embed.text(), "x\ny");
    let messages = HookContext::after(
        view(json!({"model": "m", "messages": []})),
        RequestType::Messages,
        json!({"content": [{"type": "text", "text": "hi"}, {"type": "tool_use"}, {"type": "text", "text": "there"}]}),
    );
    assert_eq!(messages.text(), "hi\nthere");
}
