//! The layer's behaviour, on paused time: calendar and rolling windows, soft limits, per-user
//! scopes, unpriced models, the 402 and 429 answers, and settlement on every exit.

mod support;

use std::time::Duration;

use http::{Request, Response};
use portcullis_budget::clock::{self, Clock};
use portcullis_budget::{
    BudgetLayer, Dimension, Policy, RateKind, RateRule, RateUnit, Reset, Unpriced, UsageLimits,
};
use portcullis_core::facts::{CacheStatus, ResponseFacts};
use portcullis_core::{Body, BoxError, BufferedBody};
use support::{CHAT, COMPLETION, COST, PROMPT, json_upstream, read, request};
use tower::{Layer, ServiceExt, service_fn};

const TOKENS: u64 = PROMPT + COMPLETION;

fn at(y: i64, m: u32, d: u32, h: u64, min: u64) -> Duration {
    Duration::from_secs(clock::days_from_civil(y, m, d) as u64 * clock::DAY + h * 3600 + min * 60)
}

fn limits(start: Duration, policy: Policy) -> BudgetLayer {
    BudgetLayer::builder()
        .clock(Clock::starting_at(start))
        .policy(policy)
        .build()
        .unwrap()
}

async fn send(
    layer: &BudgetLayer,
    req: Request<BufferedBody>,
) -> (u16, http::HeaderMap, serde_json::Value) {
    let res = layer
        .layer(json_upstream(PROMPT, COMPLETION))
        .oneshot(req)
        .await
        .unwrap();
    read(res).await
}

async fn chat(layer: &BudgetLayer) -> (u16, http::HeaderMap, serde_json::Value) {
    send(layer, request(CHAT, Some("k"), None)).await
}

#[tokio::test(start_paused = true)]
async fn a_daily_budget_resets_at_midnight_utc() {
    let layer = limits(
        at(2025, 3, 31, 23, 59),
        Policy::new("daily").usage(UsageLimits::tokens(2 * TOKENS).reset(Reset::Daily)),
    );
    assert_eq!(chat(&layer).await.0, 200);
    assert_eq!(chat(&layer).await.0, 200);
    let (status, headers, body) = chat(&layer).await;
    assert_eq!(status, 402);
    assert_eq!(headers["retry-after"], "60");
    assert_eq!(body["error"]["type"], "budget_exceeded");
    assert_eq!(body["error"]["code"], "budget_exceeded");
    assert_eq!(body["error"]["param"], "daily");
    assert_eq!(body["error"]["limit"]["window"], "daily");
    assert_eq!(body["error"]["limit"]["resets_at"], "2025-04-01T00:00:00Z");
    assert_eq!(body["error"]["limit"]["used"], 2 * TOKENS);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("resets at 2025-04-01T00:00:00Z"),
        "{body}"
    );
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(chat(&layer).await.0, 402, "still March 31st");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(chat(&layer).await.0, 200, "April 1st: a new window");
    let snapshot = layer.snapshot().await.unwrap();
    assert_eq!(snapshot.scopes.len(), 1);
    assert_eq!(
        snapshot.scopes[0].used, TOKENS,
        "spend never carries into a new day"
    );
    assert_eq!(
        snapshot.to_json()["scopes"][0]["resets_at"],
        "2025-04-02T00:00:00Z"
    );
}

#[tokio::test(start_paused = true)]
async fn weekly_budgets_reset_on_monday_or_sunday_and_monthly_on_the_first() {
    // Sunday 2025-03-16, 23:00 UTC.
    let iso = limits(
        at(2025, 3, 16, 23, 0),
        Policy::new("weekly").usage(UsageLimits::tokens(TOKENS).reset(Reset::Weekly)),
    );
    let sunday = limits(
        at(2025, 3, 15, 23, 0),
        Policy::new("weekly").usage(
            UsageLimits::tokens(TOKENS)
                .reset(Reset::Weekly)
                .week_start(clock::Weekday::Sunday),
        ),
    );
    let monthly = limits(
        at(2024, 2, 29, 23, 0),
        Policy::new("monthly").usage(UsageLimits::tokens(TOKENS).reset(Reset::Monthly)),
    );
    for (layer, resets) in [
        (&iso, "2025-03-17T00:00:00Z"),
        (&sunday, "2025-03-16T00:00:00Z"),
        (&monthly, "2024-03-01T00:00:00Z"),
    ] {
        assert_eq!(chat(layer).await.0, 200);
        let (status, headers, body) = chat(layer).await;
        assert_eq!(status, 402);
        assert_eq!(body["error"]["limit"]["resets_at"], resets);
        assert_eq!(headers["retry-after"], "3600");
    }
    tokio::time::advance(Duration::from_secs(3600)).await;
    for layer in [&iso, &sunday, &monthly] {
        assert_eq!(chat(layer).await.0, 200);
    }
}

#[tokio::test(start_paused = true)]
async fn a_rolling_window_forgets_spend_after_its_length() {
    let layer = limits(
        at(2025, 6, 1, 0, 0),
        Policy::new("rolling").usage(
            UsageLimits::tokens(TOKENS)
                .reset(Reset::Daily)
                .rolling(true),
        ),
    );
    assert_eq!(chat(&layer).await.0, 200);
    // Midnight passes: a calendar window would reset, a rolling one does not.
    tokio::time::advance(Duration::from_secs(23 * 3600 + 59 * 60)).await;
    let (status, _, body) = chat(&layer).await;
    assert_eq!(status, 402);
    assert_eq!(body["error"]["limit"]["window"], "rolling daily");
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(
        chat(&layer).await.0,
        200,
        "24 hours later the spend has left the window"
    );
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_answers_429_with_retry_after_and_openai_headers() {
    let layer = limits(
        at(2025, 1, 1, 12, 0),
        Policy::new("rpm")
            .per(Dimension::ApiKey)
            .rate(RateRule::requests_per_minute(2)),
    );
    let (status, headers, _) = chat(&layer).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-ratelimit-limit-requests"], "2");
    assert_eq!(headers["x-ratelimit-remaining-requests"], "1");
    assert_eq!(headers["x-ratelimit-reset-requests"], "30s");
    assert_eq!(chat(&layer).await.1["x-ratelimit-remaining-requests"], "0");
    let (status, headers, body) = chat(&layer).await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "30");
    assert_eq!(headers["x-ratelimit-limit-requests"], "2");
    assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
    assert_eq!(headers["x-ratelimit-reset-requests"], "1m0s");
    assert_eq!(headers["x-portcullis-limit-policy"], "rpm");
    assert_eq!(headers["x-portcullis-limit-scope"], "api_key=k");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["limit"]["unit"], "rpm");
    assert_eq!(body["error"]["limit"]["retry_after_ms"], 30_000);
    // Another key has its own bucket.
    assert_eq!(
        send(&layer, request(CHAT, Some("other"), None)).await.0,
        200
    );
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(chat(&layer).await.0, 200, "one request's worth refilled");
    assert_eq!(chat(&layer).await.0, 429);
    assert_eq!(layer.limits().counts().refused_rate, 2);
}

#[tokio::test(start_paused = true)]
async fn a_token_rate_is_reserved_then_settled_to_the_real_usage() {
    let layer = BudgetLayer::builder()
        .clock(Clock::starting_at(at(2025, 1, 1, 0, 0)))
        .policy(Policy::new("tpm").rate(RateRule::new(RateKind::Tokens, RateUnit::Minute, 100)))
        .build()
        .unwrap();
    // The estimate is 29 tokens; the upstream reports 10 + 5.
    let stack = layer.layer(json_upstream(10, 5));
    let (status, headers, _) = read(
        stack
            .clone()
            .oneshot(request(CHAT, None, None))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-ratelimit-limit-tokens"], "100");
    assert_eq!(
        headers["x-ratelimit-remaining-tokens"],
        (100 - TOKENS).to_string()
    );
    let snapshot = layer.snapshot().await.unwrap();
    assert_eq!(snapshot.scopes[0].used, 15, "settled to the usage");
    assert_eq!(snapshot.scopes[0].remaining, Some(85));
}

#[tokio::test(start_paused = true)]
async fn a_soft_limit_only_alerts() {
    let layer = limits(
        at(2025, 1, 1, 0, 0),
        Policy::new("team").usage(UsageLimits::tokens(10 * TOKENS).alert_at(2 * TOKENS)),
    );
    let (status, headers, _) = chat(&layer).await;
    assert_eq!(status, 200);
    assert!(headers.get("x-portcullis-budget-alert").is_none());
    for _ in 0..3 {
        let (status, headers, _) = chat(&layer).await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-portcullis-budget-alert"], "team");
    }
    // A budget without a credit limit never refuses.
    let alert_only = limits(
        at(2025, 1, 1, 0, 0),
        Policy::new("watch").usage(UsageLimits::tokens(0).alert_at(1)),
    );
    for _ in 0..5 {
        let (status, headers, _) = chat(&alert_only).await;
        assert_eq!(
            (status, &headers["x-portcullis-budget-alert"]),
            (200, &"watch".parse().unwrap())
        );
    }
}

#[tokio::test(start_paused = true)]
async fn end_users_from_metadata_have_budgets_of_their_own() {
    let layer = limits(
        at(2025, 1, 1, 0, 0),
        Policy::new("per-user")
            .per(Dimension::ApiKey)
            .per(Dimension::metadata("_user"))
            .usage(UsageLimits::tokens(TOKENS)),
    );
    assert_eq!(
        send(&layer, request(CHAT, Some("k"), Some("alice")))
            .await
            .0,
        200
    );
    let (status, headers, body) = send(&layer, request(CHAT, Some("k"), Some("alice"))).await;
    assert_eq!(status, 402);
    assert_eq!(
        body["error"]["limit"]["scope"],
        "api_key=k,metadata._user=alice"
    );
    assert_eq!(
        headers["x-portcullis-limit-scope"],
        "api_key=k,metadata._user=alice"
    );
    assert!(
        headers.get("retry-after").is_none(),
        "a lifetime budget never resets"
    );
    assert_eq!(
        send(&layer, request(CHAT, Some("k"), Some("bob"))).await.0,
        200
    );
    assert_eq!(
        send(&layer, request(CHAT, Some("k2"), Some("alice")))
            .await
            .0,
        200
    );
    // No user: one shared scope, so leaving the field out never escapes a limit.
    assert_eq!(send(&layer, request(CHAT, Some("k"), None)).await.0, 200);
    assert_eq!(send(&layer, request(CHAT, Some("k"), None)).await.0, 402);
    let scopes: Vec<String> = layer
        .snapshot()
        .await
        .unwrap()
        .scopes
        .into_iter()
        .map(|s| s.scope)
        .collect();
    assert_eq!(
        scopes,
        [
            "api_key=k,metadata._user=",
            "api_key=k,metadata._user=alice",
            "api_key=k,metadata._user=bob",
            "api_key=k2,metadata._user=alice"
        ]
    );
}

const MYSTERY: &str = r#"{"model":"mystery-model","max_tokens":7,"messages":[{"role":"user","content":"Say hello to the world"}]}"#;

#[tokio::test(start_paused = true)]
async fn unpriced_models_are_refused_or_counted_in_tokens_only() {
    let cost = Policy::new("dollars").usage(UsageLimits::cost_usd(1.0));
    let refuse = limits(at(2025, 1, 1, 0, 0), cost.clone());
    let (status, _, body) = send(&refuse, request(MYSTERY, None, None)).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "model_not_priced");
    assert_eq!(body["error"]["param"], "model");
    assert_eq!(
        send(&refuse, request(CHAT, None, None)).await.0,
        200,
        "gpt-4o is priced"
    );

    let tokens_only = BudgetLayer::builder()
        .clock(Clock::starting_at(at(2025, 1, 1, 0, 0)))
        .policy(cost)
        .policy(Policy::new("tokens").usage(UsageLimits::tokens(1000)))
        .unpriced(Unpriced::TokensOnly)
        .build()
        .unwrap();
    assert_eq!(
        send(&tokens_only, request(MYSTERY, None, None)).await.0,
        200
    );
    let snapshot = tokens_only.snapshot().await.unwrap();
    let used: Vec<(&str, u64)> = snapshot
        .scopes
        .iter()
        .map(|s| (s.policy.as_str(), s.used))
        .collect();
    assert_eq!(
        used,
        [("tokens", TOKENS)],
        "the cost budget was not touched"
    );
    // A price added by config makes it count.
    let mut prices = portcullis_budget::PriceTable::builtin();
    prices.set(
        None,
        "mystery-model",
        portcullis_budget::Price::per_million_usd(1.0, 1.0),
    );
    let priced = BudgetLayer::builder()
        .clock(Clock::starting_at(at(2025, 1, 1, 0, 0)))
        .policy(Policy::new("dollars").usage(UsageLimits::cost_usd(1.0)))
        .prices(prices)
        .build()
        .unwrap();
    assert_eq!(send(&priced, request(MYSTERY, None, None)).await.0, 200);
    // Settled at the price of the model that answered, as the upstream reports it (gpt-4o).
    assert_eq!(priced.snapshot().await.unwrap().scopes[0].used, COST);
}

#[tokio::test(start_paused = true)]
async fn cost_is_settled_from_normalised_usage() {
    let layer = limits(
        at(2025, 1, 1, 0, 0),
        Policy::new("dollars").usage(UsageLimits::cost_usd(1.0)),
    );
    // OpenAI reports 1,000 prompt tokens of which 400 were cached, and 100 out.
    let upstream = service_fn(|_req: Request<BufferedBody>| async {
        let body = r#"{"model":"gpt-4o","choices":[{"index":0,"message":{"content":"x"},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":1000,"completion_tokens":100,"total_tokens":1100,"prompt_tokens_details":{"cached_tokens":400}}}"#;
        Ok::<_, BoxError>(Response::new(Body::from(body)))
    });
    let res = layer
        .layer(upstream)
        .oneshot(request(CHAT, None, None))
        .await
        .unwrap();
    assert_eq!(read(res).await.0, 200);
    // 600 × $2.50 + 400 × $1.25 + 100 × $10 per million.
    assert_eq!(
        layer.snapshot().await.unwrap().scopes[0].used,
        1500 + 500 + 1000
    );
}

#[tokio::test(start_paused = true)]
async fn cache_hits_errors_and_early_cancels_cost_nothing() {
    let layer = limits(
        at(2025, 1, 1, 0, 0),
        Policy::new("dollars").usage(UsageLimits::cost_usd(1.0)),
    );
    let hit = service_fn(|req: Request<BufferedBody>| async move {
        let mut res = json_upstream(PROMPT, COMPLETION).oneshot(req).await?;
        ResponseFacts::get_mut(&mut res).cache = Some(CacheStatus::Hit);
        Ok::<_, BoxError>(res)
    });
    assert_eq!(
        read(
            layer
                .layer(hit)
                .oneshot(request(CHAT, None, None))
                .await
                .unwrap()
        )
        .await
        .0,
        200
    );

    let failing = service_fn(|_req: Request<BufferedBody>| async {
        Err::<Response<Body>, BoxError>("connection reset".into())
    });
    assert!(
        layer
            .layer(failing)
            .oneshot(request(CHAT, None, None))
            .await
            .is_err()
    );

    let status_500 = service_fn(|_req: Request<BufferedBody>| async {
        let mut res = Response::new(Body::from(r#"{"error":{"message":"boom"}}"#));
        *res.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        Ok::<_, BoxError>(res)
    });
    assert_eq!(
        read(
            layer
                .layer(status_500)
                .oneshot(request(CHAT, None, None))
                .await
                .unwrap()
        )
        .await
        .0,
        500
    );

    // The client leaves before the headers: the future is dropped mid-call.
    // An upstream that never answers: the request is dropped by the client's timeout.
    let slow = service_fn(|_req: Request<BufferedBody>| async move {
        std::future::pending::<Result<Response<Body>, BoxError>>().await
    });
    let call = layer.layer(slow).oneshot(request(CHAT, None, None));
    assert!(
        tokio::time::timeout(Duration::from_secs(1), call)
            .await
            .is_err()
    );

    let snapshot = layer.snapshot().await.unwrap();
    assert_eq!(
        (snapshot.scopes[0].used, snapshot.scopes[0].reserved),
        (0, 0)
    );
    let counts = layer.limits().counts();
    assert_eq!((counts.reserved, counts.settled), (4, 4));
}

#[tokio::test(start_paused = true)]
async fn a_cut_stream_is_charged_what_was_streamed() {
    let layer = limits(
        at(2025, 1, 1, 0, 0),
        Policy::new("tokens").usage(UsageLimits::tokens(1000)),
    );
    // One content event, then the end: no finish reason, no [DONE], no usage.
    let cut = service_fn(|_req: Request<BufferedBody>| async {
        let body =
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello world\"}}]}\n\n";
        Ok::<_, BoxError>(
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from(body))
                .unwrap(),
        )
    });
    let res = layer
        .layer(cut)
        .oneshot(request(CHAT, None, None))
        .await
        .unwrap();
    assert_eq!(read(res).await.0, 200);
    // The prompt estimate and "Hello world" (11 characters: 4 tokens).
    assert_eq!(layer.snapshot().await.unwrap().scopes[0].used, PROMPT + 4);
}

#[tokio::test(start_paused = true)]
async fn a_request_the_layer_cannot_read_is_a_400() {
    let layer = limits(
        at(2025, 1, 1, 0, 0),
        Policy::new("tokens").usage(UsageLimits::tokens(1000)),
    );
    let (status, _, body) = send(&layer, request("{not json", None, None)).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

#[tokio::test(start_paused = true)]
async fn scopes_name_every_dimension_with_their_separators_escaped() {
    let mut policy = Policy::new("all");
    for dim in [
        Dimension::ApiKey,
        Dimension::VirtualKey,
        Dimension::User,
        Dimension::Team,
        Dimension::Provider,
        Dimension::Model,
        Dimension::metadata("_user"),
    ] {
        policy = policy.per(dim);
    }
    let layer = limits(
        at(2025, 1, 1, 0, 0),
        policy.usage(UsageLimits::tokens(10 * TOKENS)),
    );
    let body = CHAT.replace(r#""gpt-4o""#, r#""@openai/gpt-4o""#);
    let mut req = request(&body, Some(r"k\1,a=b"), Some(r"al,ice=x\"));
    let caller = req
        .extensions_mut()
        .get_mut::<portcullis_core::context::Caller>()
        .unwrap();
    caller.virtual_key = Some("vk".into());
    caller.user = Some("u".into());
    caller.team = Some("t=1".into());
    assert_eq!(send(&layer, req).await.0, 200);
    let snapshot = layer.snapshot().await.unwrap();
    assert_eq!(
        snapshot.scopes[0].scope,
        r"api_key=k\\1\,a\=b,virtual_key=vk,user=u,team=t\=1,provider=openai,model=gpt-4o,metadata._user=al\,ice\=x\\"
    );
    assert_eq!(snapshot.scopes[0].used, TOKENS);
}

#[tokio::test(start_paused = true)]
async fn a_policy_of_one_provider_reads_the_provider_of_each_request() {
    let layer = limits(
        at(2025, 1, 1, 0, 0),
        Policy::new("openai")
            .per(Dimension::Provider)
            .matching(Dimension::Provider, "openai")
            .usage(UsageLimits::tokens(10 * TOKENS)),
    );
    let from = |provider: Option<&str>| {
        let mut req = request(CHAT, Some("k"), None);
        if let Some(provider) = provider {
            req.headers_mut()
                .insert("x-portkey-provider", provider.parse().unwrap());
        }
        req
    };
    for provider in [Some("openai"), Some("anthropic"), None, Some("openai")] {
        assert_eq!(send(&layer, from(provider)).await.0, 200);
    }
    let snapshot = layer.snapshot().await.unwrap();
    assert_eq!(snapshot.scopes.len(), 1);
    assert_eq!(snapshot.scopes[0].scope, "provider=openai");
    assert_eq!(
        snapshot.scopes[0].used,
        2 * TOKENS,
        "only openai's requests"
    );
}

#[tokio::test(start_paused = true)]
async fn a_cost_budget_prices_the_model_at_the_requests_provider() {
    // Priced at one provider only: no dimension reads the provider, the price does.
    let layer = BudgetLayer::builder()
        .clock(Clock::starting_at(at(2025, 1, 1, 0, 0)))
        .prices(portcullis_budget::PriceTable::empty().with(
            Some("azure"),
            "gpt-4o",
            portcullis_budget::Price::per_million_usd(2.5, 10.0),
        ))
        .policy(Policy::new("spend").usage(UsageLimits::cost_usd(100.0)))
        .build()
        .unwrap();
    let mut req = request(CHAT, Some("k"), None);
    req.headers_mut()
        .insert("x-portkey-provider", "azure".parse().unwrap());
    assert_eq!(send(&layer, req).await.0, 200);
    assert_eq!(layer.snapshot().await.unwrap().scopes[0].used, COST);
    let (status, _, body) = chat(&layer).await;
    assert_eq!(status, 400, "no price without the provider");
    assert_eq!(body["error"]["code"], "model_not_priced");
}
