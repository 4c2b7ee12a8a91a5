//! The console in a real browser (headless Chromium over WebDriver): log in, see a request
//! appear live, open its attempts, watch a failing target's breaker open in the routing tree,
//! read the limits. A screenshot of each view is saved under the target's test folder
//! (`target/tmp/console/*.png`).

#[allow(unused_imports)]
mod support;

use std::path::PathBuf;

use portcullis_testkit::webdriver::Browser;
use portcullis_testkit::{FakeUpstream, Plan};
use support::{CHAT, post, start};

const ADMIN: &str = "console-admin-token-0123";
const PATH: &str = "/v1/chat/completions";

fn shot(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("console")
        .join(format!("{name}.png"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_browser() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let bad = FakeUpstream::start().await;
    bad.set(Plan::ok().status(500));
    let good = FakeUpstream::start().await;
    good.set(Plan::ok().usage(11, 5));
    let json = format!(
        r#"{{"server": {{"admin_token": "{ADMIN}",
                        "limits": [{{"name": "global", "usage_limits": {{"type": "tokens", "credit_limit": 100000, "periodic_reset": "daily"}}}}]}},
            "providers": {{"bad": {{"provider": "openai", "base_url": "{}"}},
                           "good": {{"provider": "openai", "base_url": "{}"}}}},
            "config": {{"strategy": {{"mode": "fallback"}},
                        "circuit_breaker": {{"consecutive_failures": 2, "cooldown_ms": 600000}},
                        "targets": [{{"virtual_key": "bad"}}, {{"virtual_key": "good"}}]}}}}"#,
        bad.base_url(),
        good.base_url()
    );
    let gw = start(&json).await;
    let base = format!("http://{}", gw.addr);

    // Log in: a wrong token first.
    browser.goto(&format!("{base}/console/")).await;
    browser
        .wait_for("!document.getElementById('login').hidden")
        .await;
    browser.type_into("#token", "not-the-admin-token").await;
    browser.click("#login-button").await;
    browser
        .wait_for("document.getElementById('login-error').textContent === 'Wrong token.'")
        .await;
    browser.screenshot(&shot("1-login")).await;
    browser.type_into("#token", ADMIN).await;
    browser.click("#login-button").await;
    browser
        .wait_for("document.getElementById('conn').dataset.state === 'live'")
        .await;
    let login_shown = browser
        .run(
            "return getComputedStyle(document.getElementById('login')).display;",
            serde_json::json!([]),
        )
        .await;
    assert_eq!(login_shown, "none", "the login form is gone once logged in");
    // The session cookie is HttpOnly: the page's scripts cannot read it.
    let cookies = browser
        .run("return document.cookie;", serde_json::json!([]))
        .await;
    assert_eq!(cookies, "", "the session cookie is HttpOnly");

    // A request appears live: the first target fails, the fallback answers.
    let e = post(
        gw.addr,
        PATH,
        &[("x-portkey-trace-id", "browser-trace-1")],
        CHAT,
    )
    .await;
    assert_eq!(e.status, 200, "{}", e.text());
    browser
        .wait_for("document.querySelectorAll('#log tbody tr.entry').length === 1")
        .await;
    let row = browser.text("#log tbody tr.entry").await;
    assert!(row.contains("200") && row.contains("good"), "{row}");
    browser.screenshot(&shot("2-requests")).await;

    // Its attempts: bad answered 500, good 200.
    browser.click("#log tbody tr.entry").await;
    browser
        .wait_for("document.querySelectorAll('#detail tr.attempt').length === 2")
        .await;
    let detail = browser.text("#detail").await;
    assert!(detail.contains("browser-trace-1"), "{detail}");
    assert!(!detail.contains("null"), "{detail}");
    let outcomes = browser
        .run(
            "return [...document.querySelectorAll('#detail tr.attempt')].map(r => r.dataset.outcome);",
            serde_json::json!([]),
        )
        .await;
    assert_eq!(outcomes, serde_json::json!(["500", "200"]));
    browser.screenshot(&shot("3-attempts")).await;

    // A second failure opens the first target's breaker; the tree shows it.
    assert_eq!(post(gw.addr, PATH, &[], CHAT).await.status, 200);
    browser
        .wait_for("document.querySelectorAll('#log tbody tr.entry').length === 2")
        .await;
    browser.click("#tabs [data-view=routing]").await;
    browser
        .wait_for("document.querySelector('li.leaf[data-provider=bad] .breaker-open') !== null")
        .await;
    browser
        .wait_for("document.querySelector('li.leaf[data-provider=good] .breaker-closed') !== null")
        .await;
    let bad_leaf = browser.text("li.leaf[data-provider=bad]").await;
    assert!(bad_leaf.contains("100% errors of 2"), "{bad_leaf}");
    browser.screenshot(&shot("4-routing")).await;

    // Spend and limits.
    browser.click("#tabs [data-view=limits]").await;
    browser
        .wait_for("document.querySelectorAll('#limits tbody tr.scope').length === 1")
        .await;
    let scope = browser.text("#limits tbody tr.scope").await;
    assert!(
        scope.contains("global") && scope.contains("100000"),
        "{scope}"
    );
    browser.screenshot(&shot("5-limits")).await;

    // Logging out ends the stream and shows the login form again.
    browser.click("#logout").await;
    browser
        .wait_for("!document.getElementById('login').hidden")
        .await;
    browser.quit().await;
}
