//! The condition language through a router: every operator against every JSON type, missing
//! fields, nesting, ANDed keys and key order. Each check builds a router with one condition
//! (`hit`) and a default (`miss`) and sends a real request through it.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{Request, Response};
use http_body_util::BodyExt;
use portcullis_core::context::Metadata;
use portcullis_core::{Body, BoxError, BufferedBody, RequestView};
use portcullis_route::{BoxTarget, ConditionalRouter};
use serde_json::{Value, json};
use tower::{ServiceExt, service_fn};

fn named(name: &'static str) -> BoxTarget {
    BoxTarget::new(service_fn(move |_req: Request<BufferedBody>| async move {
        Ok::<_, BoxError>(Response::new(Body::from(name)))
    }))
}

/// A request with `body` parsed into its view, `metadata` as its extension, sent to `path`.
struct Req {
    path: &'static str,
    body: Option<Value>,
    metadata: Option<Vec<(&'static str, &'static str)>>,
}

fn body(body: Value) -> Req {
    Req {
        path: "/v1/chat/completions",
        body: Some(body),
        metadata: None,
    }
}

fn meta(pairs: &[(&'static str, &'static str)]) -> Req {
    Req {
        path: "/v1/chat/completions",
        body: None,
        metadata: Some(pairs.to_vec()),
    }
}

fn path(path: &'static str) -> Req {
    Req {
        path,
        body: None,
        metadata: None,
    }
}

fn request(req: &Req) -> Request<BufferedBody> {
    let mut r = Request::post(req.path).body(BufferedBody::empty()).unwrap();
    if let Some(body) = &req.body {
        let view = RequestView::parse(serde_json::to_vec(body).unwrap().into()).unwrap();
        r.extensions_mut().insert(Arc::new(view));
    }
    if let Some(pairs) = &req.metadata {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        r.extensions_mut().insert(Metadata::new(map));
    }
    r
}

/// Whether `query` sends `req` to its target (through the router service, not a shortcut).
async fn holds(query: Value, req: Req) -> bool {
    let router = ConditionalRouter::builder()
        .target("hit", named("hit"))
        .target("miss", named("miss"))
        .conditions(&json!([{"query": query, "then": "hit"}]))
        .unwrap_or_else(|e| panic!("{e}"))
        .default("miss")
        .build()
        .unwrap();
    let res = router.oneshot(request(&req)).await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    match &body[..] {
        b"hit" => true,
        b"miss" => false,
        other => panic!("unexpected answer {other:?}"),
    }
}

/// Asserts each `(query, request, expected)` row.
async fn table(rows: Vec<(Value, Req, bool)>) {
    for (i, (query, req, expected)) in rows.into_iter().enumerate() {
        let shown = query.to_string();
        assert_eq!(holds(query, req).await, expected, "row {i}: {shown}");
    }
}

#[tokio::test]
async fn eq_is_strict_json_equality_for_every_type() {
    table(vec![
        // strings
        (
            json!({"params.model": "gpt-4o"}),
            body(json!({"model": "gpt-4o"})),
            true,
        ),
        (
            json!({"params.model": {"$eq": "gpt-4o"}}),
            body(json!({"model": "gpt-4o"})),
            true,
        ),
        (
            json!({"params.model": "gpt-4o"}),
            body(json!({"model": "gpt-4o-mini"})),
            false,
        ),
        (
            json!({"params.model": "GPT-4o"}),
            body(json!({"model": "gpt-4o"})),
            false,
        ),
        // numbers: by value, never equal to a string
        (json!({"params.n": 1}), body(json!({"n": 1})), true),
        (json!({"params.n": 1}), body(json!({"n": 1.0})), true),
        (
            json!({"params.n": {"$eq": 0.5}}),
            body(json!({"n": 0.5})),
            true,
        ),
        (json!({"params.n": 1}), body(json!({"n": "1"})), false),
        (json!({"params.n": "1"}), body(json!({"n": 1})), false),
        (json!({"params.n": -1}), body(json!({"n": 1})), false),
        // booleans: never equal to their text or to 0/1
        (
            json!({"params.stream": true}),
            body(json!({"stream": true})),
            true,
        ),
        (
            json!({"params.stream": false}),
            body(json!({"stream": true})),
            false,
        ),
        (
            json!({"params.stream": "true"}),
            body(json!({"stream": true})),
            false,
        ),
        (
            json!({"params.flag": true}),
            body(json!({"flag": 1})),
            false,
        ),
        // null: equals only null, and a missing field is not null
        (
            json!({"params.user": null}),
            body(json!({"user": null})),
            true,
        ),
        (
            json!({"params.user": {"$eq": null}}),
            body(json!({"user": null})),
            true,
        ),
        (json!({"params.user": null}), body(json!({})), false),
        (
            json!({"params.user": null}),
            body(json!({"user": ""})),
            false,
        ),
        // arrays and objects: by value, in order for arrays, any key order for objects
        (
            json!({"params.stop": {"$eq": ["a", "b"]}}),
            body(json!({"stop": ["a", "b"]})),
            true,
        ),
        (
            json!({"params.stop": {"$eq": ["a", "b"]}}),
            body(json!({"stop": ["b", "a"]})),
            false,
        ),
        (
            json!({"params.stop": {"$eq": ["a"]}}),
            body(json!({"stop": "a"})),
            false,
        ),
        (
            json!({"params.response_format": {"$eq": {"type": "json_object", "strict": true}}}),
            body(json!({"response_format": {"strict": true, "type": "json_object"}})),
            true,
        ),
        (
            json!({"params.response_format": {"$eq": {"type": "json_object"}}}),
            body(json!({"response_format": {"type": "json_object", "strict": true}})),
            false,
        ),
        // a missing field, a missing body
        (json!({"params.model": "gpt-4o"}), body(json!({})), false),
        (
            json!({"params.model": "gpt-4o"}),
            meta(&[("model", "gpt-4o")]),
            false,
        ),
    ])
    .await;
}

#[tokio::test]
async fn ne_is_the_negation_and_true_for_missing_fields() {
    table(vec![
        (
            json!({"params.model": {"$ne": "gpt-4o"}}),
            body(json!({"model": "gpt-4o"})),
            false,
        ),
        (
            json!({"params.model": {"$ne": "gpt-4o"}}),
            body(json!({"model": "o1"})),
            true,
        ),
        (
            json!({"params.n": {"$ne": 1}}),
            body(json!({"n": 1.0})),
            false,
        ),
        (
            json!({"params.n": {"$ne": 1}}),
            body(json!({"n": "1"})),
            true,
        ),
        (
            json!({"params.b": {"$ne": true}}),
            body(json!({"b": "true"})),
            true,
        ),
        (
            json!({"params.u": {"$ne": null}}),
            body(json!({"u": null})),
            false,
        ),
        (
            json!({"params.u": {"$ne": null}}),
            body(json!({"u": 0})),
            true,
        ),
        (
            json!({"params.a": {"$ne": [1]}}),
            body(json!({"a": [1]})),
            false,
        ),
        (
            json!({"params.o": {"$ne": {"k": 1}}}),
            body(json!({"o": {"k": 2}})),
            true,
        ),
        // missing: $ne holds, whatever the operand (even null)
        (
            json!({"params.model": {"$ne": "gpt-4o"}}),
            body(json!({})),
            true,
        ),
        (json!({"params.u": {"$ne": null}}), body(json!({})), true),
        (json!({"metadata.plan": {"$ne": "paid"}}), meta(&[]), true),
        (json!({"metadata.plan": {"$ne": "paid"}}), path("/"), true),
    ])
    .await;
}

#[tokio::test]
async fn ordering_operators_compare_numerically() {
    table(vec![
        (
            json!({"params.t": {"$gt": 0.5}}),
            body(json!({"t": 0.7})),
            true,
        ),
        (
            json!({"params.t": {"$gt": 0.7}}),
            body(json!({"t": 0.7})),
            false,
        ),
        (
            json!({"params.t": {"$gte": 0.7}}),
            body(json!({"t": 0.7})),
            true,
        ),
        (
            json!({"params.t": {"$lt": 0.7}}),
            body(json!({"t": 0.7})),
            false,
        ),
        (
            json!({"params.t": {"$lte": 0.7}}),
            body(json!({"t": 0.7})),
            true,
        ),
        (
            json!({"params.t": {"$lt": 1}}),
            body(json!({"t": -3})),
            true,
        ),
        (
            json!({"params.n": {"$gt": 9}}),
            body(json!({"n": 10})),
            true,
        ),
        // numeric strings compare as numbers, on either side: never as text ("10" < "9")
        (
            json!({"params.n": {"$gt": 9}}),
            body(json!({"n": "10"})),
            true,
        ),
        (
            json!({"params.n": {"$gt": "9"}}),
            body(json!({"n": 10})),
            true,
        ),
        (
            json!({"params.n": {"$lte": "1e3"}}),
            body(json!({"n": " 1000 "})),
            true,
        ),
        // anything that does not read as a number makes every comparison false
        (
            json!({"params.n": {"$gt": 2}}),
            body(json!({"n": "3abc"})),
            false,
        ),
        (
            json!({"params.n": {"$lt": 2}}),
            body(json!({"n": "3abc"})),
            false,
        ),
        (
            json!({"params.n": {"$gt": 0}}),
            body(json!({"n": true})),
            false,
        ),
        (
            json!({"params.n": {"$gte": 0}}),
            body(json!({"n": null})),
            false,
        ),
        (
            json!({"params.n": {"$lte": 0}}),
            body(json!({"n": null})),
            false,
        ),
        (
            json!({"params.n": {"$gt": 0}}),
            body(json!({"n": [3]})),
            false,
        ),
        (
            json!({"params.n": {"$gt": 0}}),
            body(json!({"n": {"v": 3}})),
            false,
        ),
        (
            json!({"params.n": {"$gt": 0}}),
            body(json!({"n": "NaN"})),
            false,
        ),
        (
            json!({"params.n": {"$lt": 0}}),
            body(json!({"n": "-inf"})),
            false,
        ),
        (json!({"params.n": {"$gt": 0}}), body(json!({})), false),
        (json!({"params.n": {"$lt": 0}}), body(json!({})), false),
        // several operators on one field: all must hold
        (
            json!({"params.n": {"$gte": 1, "$lt": 5}}),
            body(json!({"n": 1})),
            true,
        ),
        (
            json!({"params.n": {"$gte": 1, "$lt": 5}}),
            body(json!({"n": 5})),
            false,
        ),
        (
            json!({"params.n": {"$gt": 1, "$ne": 3}}),
            body(json!({"n": 3})),
            false,
        ),
    ])
    .await;
}

#[tokio::test]
async fn metadata_strings_compare_numerically_under_ordering() {
    // Metadata values are strings: `{"$gt": 2}` reads "3" as the number 3.
    table(vec![
        (
            json!({"metadata.tier": {"$gt": 2}}),
            meta(&[("tier", "3")]),
            true,
        ),
        (
            json!({"metadata.tier": {"$gt": 2}}),
            meta(&[("tier", "2")]),
            false,
        ),
        (
            json!({"metadata.tier": {"$gte": "2"}}),
            meta(&[("tier", "2.0")]),
            true,
        ),
        (
            json!({"metadata.tier": {"$lt": 10}}),
            meta(&[("tier", "9")]),
            true,
        ),
        (
            json!({"metadata.tier": {"$gt": 2}}),
            meta(&[("tier", "gold")]),
            false,
        ),
        (json!({"metadata.tier": {"$gt": 2}}), meta(&[]), false),
        // equality stays textual: "3.0" is not "3"
        (json!({"metadata.tier": "3"}), meta(&[("tier", "3")]), true),
        (
            json!({"metadata.tier": "3"}),
            meta(&[("tier", "3.0")]),
            false,
        ),
    ])
    .await;
}

#[tokio::test]
async fn in_and_nin_test_membership_with_strict_equality() {
    table(vec![
        (
            json!({"params.model": {"$in": ["gpt-4o", "o1"]}}),
            body(json!({"model": "o1"})),
            true,
        ),
        (
            json!({"params.model": {"$in": ["gpt-4o", "o1"]}}),
            body(json!({"model": "o3"})),
            false,
        ),
        (
            json!({"params.model": {"$in": []}}),
            body(json!({"model": "o1"})),
            false,
        ),
        (
            json!({"params.n": {"$in": [1, 2]}}),
            body(json!({"n": 2.0})),
            true,
        ),
        (
            json!({"params.n": {"$in": [1, 2]}}),
            body(json!({"n": "2"})),
            false,
        ),
        (
            json!({"params.x": {"$in": [null, true]}}),
            body(json!({"x": null})),
            true,
        ),
        (
            json!({"params.x": {"$in": [null, true]}}),
            body(json!({"x": false})),
            false,
        ),
        (
            json!({"params.x": {"$in": [[1, 2], {"a": 1}]}}),
            body(json!({"x": {"a": 1}})),
            true,
        ),
        (
            json!({"params.x": {"$in": [[1, 2]]}}),
            body(json!({"x": 1})),
            false,
        ),
        (json!({"params.x": {"$in": ["a"]}}), body(json!({})), false),
        (
            json!({"metadata.plan": {"$in": ["paid", "team"]}}),
            meta(&[("plan", "team")]),
            true,
        ),
        (
            json!({"params.model": {"$nin": ["gpt-4o", "o1"]}}),
            body(json!({"model": "o3"})),
            true,
        ),
        (
            json!({"params.model": {"$nin": ["gpt-4o", "o1"]}}),
            body(json!({"model": "o1"})),
            false,
        ),
        (
            json!({"params.n": {"$nin": [1]}}),
            body(json!({"n": "1"})),
            true,
        ),
        (
            json!({"params.n": {"$nin": []}}),
            body(json!({"n": 1})),
            true,
        ),
        (json!({"params.x": {"$nin": ["a"]}}), body(json!({})), true),
        (
            json!({"metadata.plan": {"$nin": ["free"]}}),
            meta(&[]),
            true,
        ),
        (
            json!({"metadata.plan": {"$nin": ["free"]}}),
            meta(&[("plan", "free")]),
            false,
        ),
    ])
    .await;
}

#[tokio::test]
async fn regex_matches_strings_only() {
    table(vec![
        (
            json!({"params.model": {"$regex": "^gpt-4o"}}),
            body(json!({"model": "gpt-4o-mini"})),
            true,
        ),
        (
            json!({"params.model": {"$regex": "^gpt-4o$"}}),
            body(json!({"model": "gpt-4o-mini"})),
            false,
        ),
        // unanchored, like JavaScript's `test`
        (
            json!({"params.model": {"$regex": "mini"}}),
            body(json!({"model": "gpt-4o-mini"})),
            true,
        ),
        (
            json!({"params.model": {"$regex": "(?i)^GPT"}}),
            body(json!({"model": "gpt-4o"})),
            true,
        ),
        // not strings: a number's digits are not text to a regex
        (
            json!({"params.n": {"$regex": "^1$"}}),
            body(json!({"n": 1})),
            false,
        ),
        (
            json!({"params.n": {"$regex": "true"}}),
            body(json!({"n": true})),
            false,
        ),
        (
            json!({"params.n": {"$regex": "null|undefined"}}),
            body(json!({"n": null})),
            false,
        ),
        (
            json!({"params.n": {"$regex": "a"}}),
            body(json!({"n": ["a"]})),
            false,
        ),
        (
            json!({"params.n": {"$regex": "undefined"}}),
            body(json!({})),
            false,
        ),
        (json!({"params.n": {"$regex": ""}}), body(json!({})), false),
        (
            json!({"metadata.env": {"$regex": "^prod"}}),
            meta(&[("env", "production")]),
            true,
        ),
        (
            json!({"metadata.env": {"$regex": "^prod"}}),
            meta(&[("env", "staging")]),
            false,
        ),
        (
            json!({"url.pathname": {"$regex": "/embeddings$"}}),
            path("/v1/embeddings"),
            true,
        ),
        // with another operator beside it, both must hold
        (
            json!({"params.model": {"$regex": "^gpt", "$ne": "gpt-4o"}}),
            body(json!({"model": "gpt-4o"})),
            false,
        ),
        (
            json!({"params.model": {"$regex": "^gpt", "$ne": "gpt-4o"}}),
            body(json!({"model": "gpt-4"})),
            true,
        ),
    ])
    .await;
}

#[tokio::test]
async fn params_paths_read_nested_values_and_array_items() {
    let chat = json!({
        "model": "gpt-4o",
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": true}},
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
    });
    table(vec![
        (
            json!({"params.response_format.type": "json_schema"}),
            body(chat.clone()),
            true,
        ),
        (
            json!({"params.response_format.json_schema.strict": true}),
            body(chat.clone()),
            true,
        ),
        (
            json!({"params.messages.0.role": "system"}),
            body(chat.clone()),
            true,
        ),
        (
            json!({"params.messages.1.role": "system"}),
            body(chat.clone()),
            false,
        ),
        (
            json!({"params.messages.2.role": {"$ne": "x"}}),
            body(chat.clone()),
            true,
        ),
        (
            json!({"params.model.name": {"$ne": "x"}}),
            body(chat.clone()),
            true,
        ),
        (json!({"params.model.name": "x"}), body(chat.clone()), false),
        (
            json!({"params.messages.first.role": "system"}),
            body(chat),
            false,
        ),
    ])
    .await;
}

#[tokio::test]
async fn url_pathname_is_the_request_path() {
    table(vec![
        (
            json!({"url.pathname": "/v1/chat/completions"}),
            path("/v1/chat/completions"),
            true,
        ),
        (
            json!({"url.pathname": "/v1/chat/completions"}),
            path("/v1/chat/completions?x=1"),
            true,
        ),
        (
            json!({"url.pathname": "/v1/chat/completions"}),
            path("/v1/embeddings"),
            false,
        ),
        (
            json!({"url.pathname": {"$in": ["/v1/embeddings", "/v1/moderations"]}}),
            path("/v1/embeddings"),
            true,
        ),
    ])
    .await;
}

#[tokio::test]
async fn nested_and_or_combine_queries() {
    let query = json!({"$or": [
        {"$and": [{"metadata.plan": "paid"}, {"params.model": {"$regex": "^gpt-4o"}}]},
        {"$and": [
            {"metadata.plan": "team"},
            {"$or": [{"params.n": {"$lt": 2}}, {"params.stream": true}]},
        ]},
    ]});
    let req = |plan: &'static str, body: Value| {
        let mut r = self::body(body);
        r.metadata = Some(vec![("plan", plan)]);
        r
    };
    table(vec![
        (query.clone(), req("paid", json!({"model": "gpt-4o"})), true),
        (query.clone(), req("paid", json!({"model": "o1"})), false),
        (query.clone(), req("team", json!({"n": 1})), true),
        (
            query.clone(),
            req("team", json!({"n": 3, "stream": true})),
            true,
        ),
        (query.clone(), req("team", json!({"n": 3})), false),
        (
            query.clone(),
            req("free", json!({"model": "gpt-4o", "n": 1})),
            false,
        ),
        // empty combinators: $and of nothing holds, $or of nothing does not; {} holds
        (json!({"$and": []}), body(json!({})), true),
        (json!({"$or": []}), body(json!({})), false),
        (json!({}), body(json!({})), true),
        // $and / $or beside fields: everything is ANDed
        (
            json!({"$or": [{"params.a": 1}, {"params.b": 1}], "params.c": 1}),
            body(json!({"a": 1, "c": 1})),
            true,
        ),
        (
            json!({"$or": [{"params.a": 1}, {"params.b": 1}], "params.c": 1}),
            body(json!({"a": 1, "c": 2})),
            false,
        ),
        (
            json!({"$and": [{"params.a": 1}], "$or": [{"params.b": 1}]}),
            body(json!({"a": 1, "b": 2})),
            false,
        ),
    ])
    .await;
}

#[tokio::test]
async fn several_keys_are_anded() {
    let query = json!({"metadata.plan": "paid", "params.model": "gpt-4o", "url.pathname": "/v1/chat/completions"});
    let mut all = body(json!({"model": "gpt-4o"}));
    all.metadata = Some(vec![("plan", "paid")]);
    let mut wrong_model = body(json!({"model": "o1"}));
    wrong_model.metadata = Some(vec![("plan", "paid")]);
    let mut wrong_path = body(json!({"model": "gpt-4o"}));
    wrong_path.metadata = Some(vec![("plan", "paid")]);
    wrong_path.path = "/v1/completions";
    table(vec![
        (query.clone(), all, true),
        (query.clone(), wrong_model, false),
        (query.clone(), wrong_path, false),
        (query, body(json!({"model": "gpt-4o"})), false),
    ])
    .await;
}

#[tokio::test]
async fn key_order_never_changes_the_result() {
    // The same query written in different orders. Portkey returns an `$or`'s result as soon as
    // it meets the key, and a `$regex`'s result without looking at the operators after it, so
    // its answer depends on where they are written; here every key and operator must hold.
    let texts = [
        r#"{"$or":[{"params.a":1},{"params.b":1}],"metadata.plan":"paid","params.c":{"$regex":"^[0-9]","$gte":2}}"#,
        r#"{"metadata.plan":"paid","$or":[{"params.a":1},{"params.b":1}],"params.c":{"$gte":2,"$regex":"^[0-9]"}}"#,
        r#"{"params.c":{"$gte":2,"$regex":"^[0-9]"},"metadata.plan":"paid","$or":[{"params.b":1},{"params.a":1}]}"#,
    ];
    let cases = [
        (json!({"a": 1, "c": "2"}), "paid", true),
        (json!({"b": 1, "c": "25"}), "paid", true),
        // each of these fails one key only
        (json!({"a": 1, "c": "2"}), "free", false),
        (json!({"a": 2, "c": "2"}), "paid", false),
        (json!({"a": 1, "c": "1"}), "paid", false),
        (json!({"a": 1, "c": 5}), "paid", false),
    ];
    for (body_value, plan, expected) in cases {
        for text in texts {
            let query: Value = serde_json::from_str(text).unwrap();
            let mut req = body(body_value.clone());
            req.metadata = Some(vec![("plan", plan)]);
            assert_eq!(
                holds(query, req).await,
                expected,
                "{text} on {body_value} {plan}"
            );
        }
    }
}

#[tokio::test]
async fn absent_inputs_make_fields_missing() {
    // No view, no metadata: $eq false, $ne true, everywhere.
    table(vec![
        (json!({"params.model": {"$ne": "x"}}), path("/"), true),
        (json!({"params.model": "x"}), path("/"), false),
        (json!({"metadata.k": "x"}), path("/"), false),
        (
            json!({"metadata.k": {"$nin": ["x"]}}),
            body(json!({"k": "x"})),
            true,
        ),
    ])
    .await;
}
