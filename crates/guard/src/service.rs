//! [`Guard`]: the service, and what it does around the inner call.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use portcullis_core::context::{Metadata, ProviderName};
use portcullis_core::error::{InvalidRequest, to_http_error};
use portcullis_core::{Body, BoxError, BufferedBody, RequestView};
use serde_json::{Map, Value};
use tower_service::Service;

use crate::answer::{self, HOOKS_FAILED, HookResults};
use crate::context::{HookContext, Phase, RequestType};
use crate::future::{BoxResponse, ResponseFuture};
use crate::hook::HookResult;
use crate::layer::{GuardBuilder, Guards, run_all, run_now, spawn_async};
use crate::response::{ResponseDoc, Top};
use crate::stream::GuardBody;

/// Runs guardrail hooks around an LLM service (see the [crate docs](crate)).
///
/// `poll_ready` is the inner service's. A request a hook denies is answered at once (446)
/// and leaves the inner service ready; when a before hook does I/O (a webhook), the readied
/// service moves into the future while a fresh clone takes its place.
pub struct Guard<S> {
    inner: S,
    guards: Arc<Guards>,
}

impl Guard<()> {
    /// A builder for a layer (see [`GuardBuilder`]).
    pub fn builder() -> GuardBuilder {
        GuardBuilder::default()
    }
}

impl<S> Guard<S> {
    pub(crate) fn from_shared(inner: S, guards: Arc<Guards>) -> Self {
        Self { inner, guards }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, by value.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for Guard<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            guards: self.guards.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Guard<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("inner", &self.inner)
            .field("guards", &self.guards)
            .finish()
    }
}

/// What the after phase needs from the before phase.
/// The results of the before-request hooks an outer guard layer ran, for an inner layer
/// (after-request hooks only) to report beside its own: a gateway puts the before hooks
/// outside its cache and the after hooks inside it, and `hook_results` holds both lists.
#[derive(Clone, Debug)]
pub(crate) struct BeforeResults(pub(crate) Arc<Vec<HookResult>>);

/// Marks a response whose `hook_results` an inner guard layer wrote (with the outer layer's
/// before results): the outer layer leaves it as it is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ResultsWritten;

pub(crate) struct AfterCtx {
    pub(crate) guards: Arc<Guards>,
    /// The before hooks' results (this layer's, or an outer layer's), shared with the
    /// request's [`BeforeResults`].
    pub(crate) before: Arc<Vec<HookResult>>,
    pub(crate) view: Arc<RequestView>,
    pub(crate) request_type: RequestType,
    pub(crate) metadata: Option<Metadata>,
    pub(crate) provider: Option<Arc<str>>,
}

impl AfterCtx {
    /// The context of after hooks judging a stream's text.
    pub(crate) fn window(&self) -> HookContext {
        self.with_request(HookContext::window(self.view.clone(), self.request_type))
    }

    /// The context of after hooks judging the upstream's answer; `None` when the answer is
    /// not a JSON object.
    pub(crate) fn answered(&self, response: &Bytes) -> Option<HookContext> {
        HookContext::answered(self.view.clone(), self.request_type, response)
            .map(|cx| self.with_request(cx))
    }

    fn with_request(&self, mut cx: HookContext) -> HookContext {
        cx.metadata = self.metadata.clone();
        cx.provider = self.provider.clone();
        cx
    }

    fn skips_after(&self) -> bool {
        self.request_type == RequestType::Embed
    }
}

/// Metadata from the extensions, else from `x-portkey-metadata`.
fn metadata(req: &Request<BufferedBody>) -> Option<Metadata> {
    if let Some(m) = req.extensions().get::<Metadata>() {
        return Some(m.clone());
    }
    let raw = req.headers().get("x-portkey-metadata")?.to_str().ok()?;
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(raw) else {
        return None;
    };
    let map: BTreeMap<String, String> = map
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect();
    Some(Metadata::new(map))
}

/// Puts the hooks' rewrite of the request in place: body and view, serialised once.
fn rewrite(
    req: &mut Request<BufferedBody>,
    cx: &HookContext,
    view: Arc<RequestView>,
) -> Result<Arc<RequestView>, InvalidRequest> {
    if !cx.request.changed() {
        return Ok(view);
    }
    let Some(new) = cx.request.clone().finish()? else {
        return Ok(view);
    };
    let new = Arc::new(new);
    *req.body_mut() = BufferedBody::new(new.bytes().clone());
    req.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(new.bytes().len()));
    req.extensions_mut().insert(new.clone());
    Ok(new)
}

fn invalid(e: InvalidRequest) -> Response<Body> {
    let err: BoxError = e.into();
    to_http_error(&err).to_response()
}

impl<S> Service<Request<BufferedBody>> for Guard<S>
where
    S: Service<Request<BufferedBody>, Response = Response<Body>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<BufferedBody>) -> Self::Future {
        let guards = &self.guards;
        if guards.is_empty() {
            return ResponseFuture::calling(self.inner.call(req), None);
        }
        let Some(request_type) = RequestType::from_path(req.uri().path()) else {
            return ResponseFuture::calling(self.inner.call(req), None);
        };
        let view = match req.extensions().get::<Arc<RequestView>>() {
            Some(view) => view.clone(),
            None => match RequestView::parse(req.body().bytes().clone()) {
                Ok(view) => {
                    let view = Arc::new(view);
                    req.extensions_mut().insert(view.clone());
                    view
                }
                Err(e) => return ResponseFuture::answered(invalid(e)),
            },
        };
        let metadata = metadata(&req);
        let provider = req.extensions().get::<ProviderName>().map(|p| p.0.clone());
        let inherited = req.extensions().get::<BeforeResults>().map(|r| r.0.clone());
        // After hooks only (a gateway's layer inside its cache): no before context to build,
        // no request text to read.
        let before_hooks = !(guards.before.is_empty() && guards.before_async.is_empty());
        let cx = before_hooks.then(|| {
            let mut cx = HookContext::before(view.clone(), request_type);
            cx.metadata = metadata.clone();
            cx.provider = provider.clone();
            cx
        });
        let after = move |guards: Arc<Guards>, before, view| AfterCtx {
            guards,
            before,
            view,
            request_type,
            metadata,
            provider,
        };
        let Some(mut cx) = cx else {
            let after = after(guards.clone(), inherited.unwrap_or_default(), view);
            return ResponseFuture::calling(self.inner.call(req), Some(after));
        };
        spawn_async(&guards.before_async, &cx, Phase::Before);
        let embed = request_type == RequestType::Embed;

        if guards.before_sync {
            let results = run_now(&guards.before, &mut cx, embed);
            answer::report(Phase::Before, &results, &guards.before);
            if results.iter().any(HookResult::denied) {
                return ResponseFuture::answered(answer::denied(&results, &[]));
            }
            let view = match rewrite(&mut req, &cx, view) {
                Ok(view) => view,
                Err(e) => return ResponseFuture::answered(invalid(e)),
            };
            let after = after(guards.clone(), pass_on(&mut req, results, inherited), view);
            // Called in place: the inner service was readied by `poll_ready`.
            return ResponseFuture::calling(self.inner.call(req), Some(after));
        }

        let guards = guards.clone();
        let fresh = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, fresh);
        ResponseFuture::boxed(Box::pin(async move {
            let results = run_all(&guards.before, &mut cx, embed).await;
            answer::report(Phase::Before, &results, &guards.before);
            if results.iter().any(HookResult::denied) {
                return Ok(answer::denied(&results, &[]));
            }
            let view = match rewrite(&mut req, &cx, view) {
                Ok(view) => view,
                Err(e) => return Ok(invalid(e)),
            };
            let after = after(guards, pass_on(&mut req, results, inherited), view);
            let response = ready.call(req).await.map_err(Into::into)?;
            match finish(response, after) {
                Finish::Now(response) => Ok(response),
                Finish::Later(future) => future.await,
            }
        }))
    }
}

/// This layer's before results, or, when it ran none, those an outer layer passed in; its own
/// go into the request for an inner layer to report. Shared, not copied: a result holds its
/// checks' data.
fn pass_on(
    req: &mut Request<BufferedBody>,
    results: Vec<HookResult>,
    inherited: Option<Arc<Vec<HookResult>>>,
) -> Arc<Vec<HookResult>> {
    if results.is_empty() {
        return inherited.unwrap_or_default();
    }
    let results = Arc::new(results);
    req.extensions_mut().insert(BeforeResults(results.clone()));
    results
}

/// The after phase: now (a stream to watch, or nothing to do), or once the body is read.
pub(crate) enum Finish {
    Now(Response<Body>),
    Later(BoxResponse),
}

fn is_event_stream(response: &Response<Body>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

pub(crate) fn finish(mut response: Response<Body>, ctx: AfterCtx) -> Finish {
    // After hooks run on 200 answers only; nor are results attached to anything else. An
    // inner layer that wrote both lists already has the last word.
    if response.status() != StatusCode::OK
        || response.extensions().get::<ResultsWritten>().is_some()
    {
        return Finish::Now(response);
    }
    answer::record_facts(response.extensions_mut(), ctx.before.iter());
    let no_after = ctx.guards.after.is_empty() && ctx.guards.after_async.is_empty();
    let after_hooks = !(ctx.skips_after() || no_after);
    if !after_hooks && ctx.before.is_empty() {
        return Finish::Now(response);
    }
    if is_event_stream(&response) {
        if ctx.before.iter().any(|r| !r.verdict) {
            *response.status_mut() = StatusCode::from_u16(HOOKS_FAILED).expect("246 is a status");
        }
        if !after_hooks && !ctx.guards.stream.results_event {
            return Finish::Now(response);
        }
        response.headers_mut().remove(header::CONTENT_LENGTH);
        response.extensions_mut().insert(ResultsWritten);
        return Finish::Now(
            response.map(|body| Body::boxed(GuardBody::new(body, ctx, after_hooks))),
        );
    }
    Finish::Later(Box::pin(after_json(response, ctx, after_hooks)))
}

async fn after_json(
    response: Response<Body>,
    ctx: AfterCtx,
    after_hooks: bool,
) -> Result<Response<Body>, BoxError> {
    let (mut parts, body) = response.into_parts();
    let bytes = body.collect().await?.to_bytes();
    let Some(mut cx) = ctx.answered(&bytes) else {
        return Ok(Response::from_parts(parts, Body::from(bytes)));
    };
    let mut after = Vec::new();
    if after_hooks {
        spawn_async(&ctx.guards.after_async, &cx, Phase::After);
        after = run_all(&ctx.guards.after, &mut cx, false).await;
        answer::report(Phase::After, &after, &ctx.guards.after);
    }
    if after.iter().any(HookResult::denied) {
        let denied = answer::denied(&ctx.before, &after);
        let (denied_parts, body) = denied.into_parts();
        parts.status = denied_parts.status;
        parts.headers = denied_parts.headers;
        answer::record_facts(&mut parts.extensions, after.iter());
        parts.extensions.insert(ResultsWritten);
        return Ok(Response::from_parts(parts, body));
    }
    let failed = ctx.before.iter().chain(&after).any(|r| !r.verdict);
    let results = HookResults {
        before: &ctx.before,
        after: &after,
    };
    let bytes = answer_bytes(bytes, &cx, results);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    if failed {
        parts.status = StatusCode::from_u16(HOOKS_FAILED).expect("246 is a status");
    }
    answer::record_facts(&mut parts.extensions, after.iter());
    parts.extensions.insert(ResultsWritten);
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

/// The answer the client gets: the upstream's, with `hook_results` when hooks ran.
///
/// An answer no check rewrote keeps the upstream's bytes, the results spliced in before its
/// closing brace (see [`answer::splice_results`]); one a check rewrote, or one that carries
/// its own `hook_results` (which the hooks' replace), is written anew from the parsed answer.
fn answer_bytes(upstream: Bytes, cx: &HookContext, results: HookResults<'_>) -> Bytes {
    let any = !(results.before.is_empty() && results.after.is_empty());
    let rewritten = cx.transformed_response || results.after.iter().any(|r| r.transformed);
    if !rewritten {
        if !any {
            return upstream;
        }
        // What the one pass saw: no tree is built for an answer sent on as it came.
        let top = cx.response.as_ref().map_or(
            Top {
                empty: true,
                results: false,
            },
            ResponseDoc::top,
        );
        if !top.results
            && let Some(spliced) = answer::splice_results(&upstream, top.empty, results)
        {
            return spliced.into();
        }
    }
    // The answer was read as an object, and checks replace it only with objects (a value
    // of another kind, from a check of the caller's, gives way to the results).
    let empty = Map::new();
    let object = match cx.response_json() {
        Some(Value::Object(object)) => object,
        _ => &empty,
    };
    if any {
        answer::with_results(object, results).into()
    } else {
        serde_json::to_vec(object).expect("JSON serialises").into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hook::tests::{old_hook_json, sample_results};
    use serde_json::json;

    /// What the answer was before splicing: the parsed answer, `hook_results` set when hooks
    /// ran, serialised.
    fn old_answer(cx: &HookContext, before: &[HookResult], after: &[HookResult]) -> Vec<u8> {
        let mut body = cx.response_json().cloned().unwrap_or(Value::Null);
        if !(before.is_empty() && after.is_empty()) {
            body["hook_results"] = json!({
                "before_request_hooks": before.iter().map(old_hook_json).collect::<Vec<_>>(),
                "after_request_hooks": after.iter().map(old_hook_json).collect::<Vec<_>>(),
            });
        }
        serde_json::to_vec(&body).unwrap()
    }

    /// The context of after hooks over `answer`, both ways: as a tree (what the after phase
    /// built before) and read from the bytes in one pass (what it builds now).
    fn contexts(answer: &'static [u8]) -> [HookContext; 2] {
        let view = Arc::new(
            RequestView::parse(Bytes::from_static(
                br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            ))
            .unwrap(),
        );
        let tree = serde_json::from_slice(answer).unwrap();
        let read = HookContext::answered(
            view.clone(),
            RequestType::ChatComplete,
            &Bytes::from_static(answer),
        )
        .unwrap();
        let tree = HookContext::after(view, RequestType::ChatComplete, tree);
        assert_eq!(read.text(), tree.text());
        // On a copy: asking for the tree builds it.
        assert_eq!(read.clone().response_json(), tree.response_json());
        [tree, read]
    }

    /// Results of hooks that judged and rewrote nothing.
    fn untransformed() -> Vec<HookResult> {
        let mut results = sample_results();
        for r in &mut results {
            r.transformed = false;
        }
        results
    }

    const ODD: &[u8] = b"\n{ \"usage\" : {\"total_tokens\": 3},\n  \"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hi \\u00e9\"}}],\t\"id\":\"c\", \"n\": 1.0 }\r\n";

    #[test]
    fn an_answer_no_check_rewrote_keeps_its_bytes_and_gains_the_results() {
        let results = untransformed();
        let (before, after) = (&results[..1], &results[1..]);
        for answer in [ODD, b"{}", b" { } "] {
            for cx in contexts(answer) {
                let out = answer_bytes(
                    Bytes::from_static(answer),
                    &cx,
                    HookResults { before, after },
                );
                let close = answer.iter().rposition(|&b| b == b'}').unwrap();
                assert!(out.starts_with(&answer[..close]), "{out:?}");
                assert!(out.ends_with(&answer[close..]), "{out:?}");
                let got: Value = serde_json::from_slice(&out).unwrap();
                let old: Value = serde_json::from_slice(&old_answer(&cx, before, after)).unwrap();
                assert_eq!(got, old);
            }
            // Read in one pass, the answer was sent on without a tree.
            let [_, read] = contexts(answer);
            answer_bytes(
                Bytes::from_static(answer),
                &read,
                HookResults { before, after },
            );
            assert!(!read.response.as_ref().unwrap().has_tree());
        }
        // No results to add: the upstream's bytes, untouched.
        for cx in contexts(ODD) {
            let none = HookResults {
                before: &[],
                after: &[],
            };
            assert_eq!(answer_bytes(Bytes::from_static(ODD), &cx, none), ODD);
        }
    }

    #[test]
    fn an_answer_a_check_rewrote_or_with_its_own_results_is_written_anew() {
        let results = sample_results();
        assert!(results[1].transformed, "the sample rewrites");
        let unchanged = untransformed();
        let own = br#"{"hook_results":{"from":"upstream"},"id":"c", "b" : 2}"#;
        let cases: [(&[u8], &[HookResult], bool); 5] = [
            // An after hook that says it rewrote the answer.
            (ODD, &results, false),
            // The context says so (a webhook's whole new answer).
            (ODD, &unchanged, true),
            (b"{}", &results, false),
            // The hooks' results replace the upstream's own.
            (own, &unchanged, false),
            (own, &[], false),
        ];
        for (answer, after, rewritten) in cases {
            for mut cx in contexts(answer) {
                if rewritten {
                    cx.response = Some(ResponseDoc::from_value(
                        json!({"z": 1, "choices": [{"message": {"content": "new"}}]}),
                    ));
                    cx.transformed_response = true;
                }
                let before = &unchanged[..1];
                let out = answer_bytes(
                    Bytes::from_static(answer),
                    &cx,
                    HookResults { before, after },
                );
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&old_answer(&cx, before, after))
                );
            }
        }
        // Rewritten with no results at all: the new answer alone.
        for mut cx in contexts(ODD) {
            cx.response = Some(ResponseDoc::from_value(json!({"b": 1, "a": [true]})));
            cx.transformed_response = true;
            let none = HookResults {
                before: &[],
                after: &[],
            };
            assert_eq!(
                answer_bytes(Bytes::from_static(ODD), &cx, none),
                &br#"{"a":[true],"b":1}"#[..]
            );
        }
    }

    #[test]
    fn a_checks_rewrite_of_the_text_applies_to_an_answer_read_in_one_pass() {
        let answer: &[u8] = br#"{"choices":[{"message":{"role":"assistant","content":[{"type":"text","text":"a\nb"},{"type":"image_url"},{"type":"text","text":"c"}]}}],"id":"x"}"#;
        let [mut tree, mut read] = contexts(answer);
        assert_eq!(read.parts().collect::<Vec<_>>(), ["a\nb", "", "c"]);
        let new = ["A".to_owned(), "B".to_owned(), "C".to_owned()];
        tree.set_parts(&new);
        read.set_parts(&new);
        assert!(read.transformed_response && tree.transformed_response);
        assert_eq!(read.text(), tree.text());
        // A part that is not text keeps its place and takes no new text.
        assert_eq!(read.text(), "A\n\nC");
        assert_eq!(read.response_json(), tree.response_json());
        let results = sample_results();
        let (before, after) = (&results[..1], &results[1..]);
        let written = |cx: &HookContext| {
            answer_bytes(
                Bytes::from_static(answer),
                cx,
                HookResults { before, after },
            )
        };
        assert_eq!(written(&read), written(&tree));
        assert_eq!(written(&read), old_answer(&tree, before, after));
    }
}
