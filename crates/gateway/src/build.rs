//! Compiling a config into tower services: providers once, then one stack per routing tree.
//!
//! A tree is wrapped in an attempt limit: each request may make at most `server.max_attempts`
//! upstream calls across all its retries and fallbacks (each leaf spends one per call; retry
//! and fallback stop when none is left and pass on the last answer, and a leaf reached with
//! none left answers 502 `attempts_exhausted`).
//!
//! A leaf is, outside in: override_params → cache → circuit breaker → retry → per-attempt
//! timeout → attempt spending → provider (the cache keys the request as the provider will
//! see it, and a hit makes no attempt and touches no breaker), one concrete type boxed once (a layer the config does not ask
//! for is an empty `Either` arm, not another box); each strategy is boxed once over its boxed
//! targets. Inheritance follows Portkey: `override_params` merge shallowly down the tree
//! (child keys win), a child's `retry` and `cache` replace their parent's, `request_timeout` and
//! `circuit_breaker` are inherited unless set, credentials never travel (they live in the
//! providers).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use portcullis_balance::{Balance, PeakEwma, Sticky, Strategy, Target};
use portcullis_breaker::{BreakerPolicy, CircuitBreakerLayer};
use portcullis_budget::{AnyStore, BudgetLayer, LimitsConfig, Policy, PriceTable};
use portcullis_cache::store::{MemoryStore, RedisStore};
use portcullis_cache::{CacheEngine, CacheSettings};
use portcullis_core::{
    AttemptLimitLayer, Body, BoxError, BufferedBody, BuildError, OverrideParamsLayer,
    SpendAttemptLayer,
};
use portcullis_fallback::Fallback;
use portcullis_provider::openai::OpenAiBuilder;
use portcullis_provider::{
    Anthropic, AnthropicBuilder, Gemini, GeminiBuilder, HttpClient, Mock, OpenAi,
};
use portcullis_retry::{RetryLayer, RetryPolicy};
use portcullis_route::{ConditionalRouter, RegexLimits};
use serde_json::{Map, Value};
use tower::util::{BoxCloneSyncService, Either};
use tower::{Layer, ServiceBuilder, ServiceExt};

use crate::config::{
    AnthropicSpec, Balancer, BreakerSpec, CacheServer, CacheStore, Config, ConfigError, GeminiSpec,
    LimitsStore, MockSpec, Mode, Node, NodeKind, OpenAiSpec, ProviderKind, RetrySpec, StickyKey,
};

/// A compiled stack: any tree of layers over providers, behind one type.
pub type Stack = BoxCloneSyncService<Request<BufferedBody>, Response<Body>, BoxError>;

/// The builder of an OpenAI-compatible provider from its spec.
pub(crate) fn openai_builder(
    name: &str,
    spec: &OpenAiSpec,
    clients: Option<&Clients>,
) -> OpenAiBuilder {
    let mut b = OpenAi::builder(spec.base_url.clone())
        .name(name)
        .stream_usage(spec.stream_usage)
        .idle_timeout(spec.idle_timeout)
        .allow_query_params(&spec.allow_query_params);
    if let Some(key) = &spec.api_key {
        b = b.api_key(key.clone());
    }
    if let Some(version) = &spec.azure_api_version {
        b = b
            .fixed_query("api-version", version.clone())
            .key_header("api-key");
    }
    for (k, v) in &spec.headers {
        b = b.header(k.clone(), v.clone());
    }
    if let Some(t) = spec.response_timeout {
        b = b.response_timeout(t);
    }
    if Clients::outer_deadline_first(clients, spec.response_timeout) {
        b = b.no_response_timeout();
    }
    b.client(Clients::pick(clients, spec.connect_timeout))
}

/// What the providers of one build share: the pooled client, how to make another with a
/// provider's own connect timeout (both trusting `server.upstream_ca_file`), and the
/// server's request timeout, under which their calls run.
pub(crate) struct Clients {
    builder: portcullis_provider::HttpClientBuilder,
    shared: HttpClient,
    /// `server.request_timeout`: every request the gateway hands a provider runs under it
    /// (see `gateway::dispatch`); a provider built here relies on it when it is the shorter.
    request_timeout: Option<Duration>,
}

impl Clients {
    /// The clients of `server`'s settings. The config reader checked `upstream_ca_file`; a
    /// `Server` built in code is checked here.
    pub(crate) fn new(server: &crate::config::Server) -> Result<Self, ConfigError> {
        let builder = match &server.upstream_ca {
            Some(ca) => ca.client_builder()?,
            None => HttpClient::builder(),
        };
        let shared = builder.clone().build();
        Ok(Self {
            builder,
            shared,
            request_timeout: server.request_timeout,
        })
    }

    /// Whether the server's request timeout always ends a call before a provider's response
    /// timeout (`response_timeout`, else the default) could: a call starts after its request
    /// did, and a client's `x-portkey-request-timeout` only shortens the server's. Such a
    /// provider arms no timer of its own per call (a lock taken to add one and to remove it).
    ///
    /// Strictly shorter: with equal timeouts (600 s both, the defaults) both timers fall due in
    /// the same millisecond, and the provider's, polled first, answers: a hung upstream is a
    /// 504 `upstream_timeout` that a circuit breaker counts, which a 408 would not be.
    fn outer_deadline_first(clients: Option<&Self>, response_timeout: Option<Duration>) -> bool {
        let Some(request) = clients.and_then(|c| c.request_timeout) else {
            return false;
        };
        response_timeout.unwrap_or(portcullis_provider::openai::DEFAULT_RESPONSE_TIMEOUT) > request
    }

    /// The client of a provider: the shared one, or its own for a connect timeout of its own
    /// (a provider checked alone, with no `Clients`, gets a fresh one).
    fn pick(clients: Option<&Self>, connect_timeout: Option<Duration>) -> HttpClient {
        match (clients, connect_timeout) {
            (Some(c), None) => c.shared.clone(),
            (Some(c), Some(t)) => c.builder.clone().connect_timeout(t).build(),
            (None, Some(t)) => HttpClient::with_connect_timeout(t),
            (None, None) => HttpClient::new(),
        }
    }
}

/// The builder of a native Anthropic provider from its spec.
pub(crate) fn anthropic_builder(
    name: &str,
    spec: &AnthropicSpec,
    clients: Option<&Clients>,
) -> AnthropicBuilder {
    let mut b = Anthropic::builder()
        .base_url(spec.base_url.clone())
        .name(name)
        .idle_timeout(spec.idle_timeout)
        .drop_unsupported(spec.drop_unsupported);
    if let Some(key) = &spec.api_key {
        b = b.api_key(key.clone());
    }
    if let Some(v) = &spec.version {
        b = b.version(v.clone());
    }
    for feature in &spec.beta {
        b = b.beta(feature.clone());
    }
    if let Some(n) = spec.max_tokens {
        b = b.max_tokens(n);
    }
    for (k, v) in &spec.headers {
        b = b.header(k.clone(), v.clone());
    }
    if let Some(t) = spec.response_timeout {
        b = b.response_timeout(t);
    }
    if Clients::outer_deadline_first(clients, spec.response_timeout) {
        b = b.no_response_timeout();
    }
    b.client(Clients::pick(clients, spec.connect_timeout))
}

/// The builder of a native Gemini (or Vertex AI, Gemini and Claude) provider from its spec.
pub(crate) fn gemini_builder(
    name: &str,
    spec: &GeminiSpec,
    clients: Option<&Clients>,
) -> GeminiBuilder {
    let mut b = Gemini::builder()
        .name(name)
        .idle_timeout(spec.idle_timeout)
        .drop_unsupported(spec.drop_unsupported);
    if let Some(url) = &spec.base_url {
        b = b.base_url(url.clone());
    }
    if let Some(key) = &spec.api_key {
        b = b.api_key(key.clone());
    }
    if let Some((project, region, file)) = &spec.vertex {
        // One provider for the project: Gemini models, and Claude models beside them.
        b = b.vertex(project.clone(), region.clone(), file.clone());
        if let Some(n) = spec.max_tokens {
            b = b.anthropic_max_tokens(n);
        }
        for feature in &spec.anthropic_beta {
            b = b.anthropic_beta(feature.clone());
        }
    }
    for (k, v) in &spec.headers {
        b = b.header(k.clone(), v.clone());
    }
    if let Some(t) = spec.response_timeout {
        b = b.response_timeout(t);
    }
    if Clients::outer_deadline_first(clients, spec.response_timeout) {
        b = b.no_response_timeout();
    }
    b.client(Clients::pick(clients, spec.connect_timeout))
}

/// A built provider, kept concrete so that a leaf boxes it together with its layers.
type Upstream = Either<OpenAi, Either<Anthropic, Either<Gemini, Mock>>>;

/// Every provider of a config, built once and shared by all stacks that name it, and the
/// cache engine every leaf shares.
#[derive(Debug)]
pub struct Providers {
    /// Each provider as the leaves of a tree wrap it, and boxed, as `x-portkey-virtual-key`
    /// calls it (with a cache that only `x-portkey-cache` turns on).
    services: BTreeMap<String, (Upstream, Stack)>,
    cache: Arc<CacheEngine>,
    /// The providers' own limits, enforced at each leaf that calls one (`None`: no provider
    /// has any).
    leaf_limits: Option<BudgetLayer<AnyStore>>,
    /// The providers that have limits.
    limited: std::collections::BTreeSet<String>,
    /// Bring-your-own-key providers by kind: each call uses the client's key.
    byok: BTreeMap<String, Stack>,
    /// The leaves' circuit breakers, by leaf.
    breakers: std::sync::Mutex<Breakers>,
}

/// The limits of a config: the per-request policies (`server.limits` and the gateway keys'),
/// and the providers' (enforced at their leaves), over one store.
#[derive(Clone, Debug, Default)]
pub struct Budgets {
    /// Per request, before routing (`None`: no such policy).
    pub request: Option<BudgetLayer<AnyStore>>,
    /// At the leaves.
    pub leaf: Option<BudgetLayer<AnyStore>>,
    /// The store both use, and the spec it was built from (kept by a reload).
    store: Option<(LimitsStore, AnyStore)>,
}

/// The built-in prices with each provider's `prices` over them.
pub(crate) fn price_table(config: &Config) -> Result<PriceTable, ConfigError> {
    let mut prices = PriceTable::builtin();
    for (name, provider) in &config.providers {
        if let Some(p) = &provider.prices {
            let mut by_provider = Map::new();
            by_provider.insert(name.clone(), p.clone());
            prices
                .extend_from_json(&Value::Object(by_provider))
                .map_err(|e| ConfigError::from_build(&format!("providers.{name}.prices"), e))?;
        }
    }
    Ok(prices)
}

impl Budgets {
    /// The store of `server.limits_store`.
    fn store(spec: &LimitsStore) -> Result<AnyStore, ConfigError> {
        Ok(match spec {
            LimitsStore::Memory => AnyStore::Memory(portcullis_budget::MemoryStore::new()),
            LimitsStore::Redis {
                url,
                prefix,
                timeout,
            } => AnyStore::Redis(
                portcullis_budget::RedisStore::builder(url.clone())
                    .prefix(prefix.clone())
                    .deadline(*timeout)
                    .build()
                    .map_err(|e| ConfigError::new("server.limits_store.url", e.to_string()))?,
            ),
        })
    }

    /// Builds the limits of `config` over the store of `server.limits_store`.
    pub fn build(config: &Config) -> Result<Self, ConfigError> {
        Self::build_keeping(config, &Kept::default())
    }

    fn build_keeping(config: &Config, kept: &Kept) -> Result<Self, ConfigError> {
        let server = &config.server;
        let request: Vec<Policy> = server
            .limits
            .policies
            .iter()
            .chain(&server.api_key_limits)
            .cloned()
            .collect();
        let leaf: Vec<Policy> = config
            .providers
            .values()
            .filter_map(|p| p.limits.clone())
            .collect();
        if request.is_empty() && leaf.is_empty() {
            return Ok(Self::default());
        }
        let store = match (&kept.limits_store, &server.limits.store) {
            (Some((spec, store)), now) if spec == now => store.clone(),
            _ => Self::store(&server.limits.store)?,
        };
        let prices = price_table(config)?;
        let layer = |policies: Vec<Policy>, path: &str| {
            if policies.is_empty() {
                return Ok(None);
            }
            let mut limits = LimitsConfig::default();
            limits.policies = policies;
            limits.prices = prices.clone();
            limits.unpriced = server.limits.unpriced;
            (limits.budgets_on_store_error, limits.rates_on_store_error) =
                server.limits.on_store_error;
            BudgetLayer::builder()
                .config(limits)
                .store(store.clone())
                .build()
                .map(Some)
                .map_err(|e| ConfigError::from_build(path, e))
        };
        Ok(Self {
            request: layer(request, "server.limits")?,
            leaf: layer(leaf, "providers")?,
            store: Some((server.limits.store.clone(), store)),
        })
    }
}

/// What a reload keeps of the running config: the cache (its engine and entries, when
/// `server.cache` is unchanged), the limits' store (its counters, when `server.limits_store`
/// is unchanged) and each leaf's circuit breaker (its state, when the leaf's path, provider and
/// `circuit_breaker` are unchanged).
#[derive(Clone, Debug, Default)]
pub struct Kept {
    cache: Option<(CacheServer, Arc<CacheEngine>)>,
    limits_store: Option<(LimitsStore, AnyStore)>,
    breakers: BTreeMap<String, CircuitBreakerLayer>,
}

/// The circuit breakers of one build: those a reload kept, and those this build used.
#[derive(Debug, Default)]
struct Breakers {
    kept: BTreeMap<String, CircuitBreakerLayer>,
    used: BTreeMap<String, CircuitBreakerLayer>,
}

/// The cache engine of `server.cache`.
pub(crate) fn cache_engine(spec: &CacheServer) -> Result<Arc<CacheEngine>, ConfigError> {
    let mut b = CacheEngine::builder()
        .max_entry_bytes(spec.max_entry_bytes)
        .store_timeout(spec.timeout)
        .coalesce_wait(spec.coalesce_wait);
    if let Some(t) = spec.semantic_threshold {
        b = b.threshold(t);
    }
    #[cfg(feature = "bert")]
    if let Some(dir) = &spec.bert_dir {
        let bert = portcullis_cache::semantic::BertEmbedder::from_dir(dir)
            .map_err(|e| ConfigError::new("server.cache.embedder.bert", e.to_string()))?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        b = b
            .embedder(bert)
            .blocking_embedder(cores, spec.embed_timeout);
    }
    b = match &spec.store {
        CacheStore::Memory { max_bytes } => b.store(MemoryStore::with_largest_entry(
            *max_bytes,
            spec.max_entry_bytes,
        )),
        CacheStore::Redis { url, prefix } => b.store(
            RedisStore::with_prefix(url, prefix)
                .map_err(|e| ConfigError::new("server.cache.url", e.to_string()))?,
        ),
    };
    b.build()
        .map_err(|e| ConfigError::from_build("server.cache", e))
}

impl Providers {
    /// Builds the providers of `config` (one pooled client shared by all that use the default
    /// connect timeout) and the cache engine. A provider whose response timeout is longer than
    /// `server.request_timeout` arms no timer of its own: called outside the gateway, which
    /// puts that deadline around every request, put it there yourself.
    pub fn build(config: &Config, budgets: &Budgets) -> Result<Self, ConfigError> {
        Self::build_keeping(config, budgets, &Kept::default())
    }

    fn build_keeping(config: &Config, budgets: &Budgets, kept: &Kept) -> Result<Self, ConfigError> {
        let cache = match &kept.cache {
            Some((spec, engine)) if *spec == config.server.cache => engine.clone(),
            _ => cache_engine(&config.server.cache)?,
        };
        let limited = config
            .providers
            .values()
            .filter(|p| p.limits.is_some())
            .map(|p| p.name.clone())
            .collect();
        let clients = Clients::new(&config.server)?;
        let client = clients.shared.clone();
        let mut services = BTreeMap::new();
        for (name, provider) in &config.providers {
            let upstream = match &provider.kind {
                ProviderKind::OpenAi(spec) => {
                    Either::Left(openai_builder(name, spec, Some(&clients)).build().map_err(
                        |e| ConfigError::new(format!("providers.{name}"), e.to_string()),
                    )?)
                }
                ProviderKind::Anthropic(spec) => Either::Right(Either::Left(
                    anthropic_builder(name, spec, Some(&clients))
                        .build()
                        .map_err(|e| ConfigError::from_build(&format!("providers.{name}"), e))?,
                )),
                ProviderKind::Gemini(spec) => Either::Right(Either::Right(Either::Left(
                    gemini_builder(name, spec, Some(&clients))
                        .build()
                        .map_err(|e| ConfigError::from_build(&format!("providers.{name}"), e))?,
                ))),
                ProviderKind::Mock(spec) => Either::Right(Either::Right(Either::Right(mock(
                    name,
                    spec,
                    &provider.models,
                )))),
            };
            let boxed = BoxCloneSyncService::new(cache.layer(None, name).layer(upstream.clone()));
            services.insert(name.clone(), (upstream, boxed));
        }
        let mut byok = BTreeMap::new();
        for (kind, base_url) in &config.server.byok {
            let name = format!("byok:{kind}");
            let path = format!("server.byok.{kind}");
            let upstream: Stack = if kind == "google" || kind == "gemini" {
                let p = Gemini::builder()
                    .base_url(base_url.clone())
                    .name(kind.clone())
                    .client_keys(true)
                    .client(client.clone())
                    .build()
                    .map_err(|e| ConfigError::from_build(&path, e))?;
                BoxCloneSyncService::new(cache.layer(None, &name).layer(p))
            } else if kind == "anthropic" {
                let p = Anthropic::builder()
                    .base_url(base_url.clone())
                    .name(kind.clone())
                    .client_keys(true)
                    .client(client.clone())
                    .build()
                    .map_err(|e| ConfigError::from_build(&path, e))?;
                BoxCloneSyncService::new(cache.layer(None, &name).layer(p))
            } else {
                let p = OpenAi::builder(base_url.clone())
                    .name(kind.clone())
                    .client_keys(true)
                    .client(client.clone())
                    .build()
                    .map_err(|e| ConfigError::new(&path, e.to_string()))?;
                BoxCloneSyncService::new(cache.layer(None, &name).layer(p))
            };
            byok.insert(kind.clone(), upstream);
        }
        Ok(Self {
            services,
            cache,
            leaf_limits: budgets.leaf.clone(),
            limited,
            byok,
            breakers: std::sync::Mutex::new(Breakers {
                kept: kept.breakers.clone(),
                used: BTreeMap::new(),
            }),
        })
    }

    /// The circuit breaker of a leaf: the one a reload kept for this leaf (same path, provider
    /// and policy), else a new one.
    fn breaker(
        &self,
        spec: &BreakerSpec,
        name: &str,
        node: &Node,
    ) -> Result<CircuitBreakerLayer, ConfigError> {
        let key = format!("{}|{name}|{spec:?}", node.path);
        let mut breakers = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = breakers.used.get(&key) {
            return Ok(b.clone());
        }
        let b = match breakers.kept.remove(&key) {
            Some(b) => b,
            None => breaker_layer(spec, name, node)?,
        };
        breakers.used.insert(key, b.clone());
        Ok(b)
    }

    /// The bring-your-own-key provider of `kind`, if the server enables it.
    pub fn byok(&self, kind: &str) -> Option<&Stack> {
        self.byok.get(kind)
    }

    /// The cache engine every leaf shares.
    pub fn cache(&self) -> &Arc<CacheEngine> {
        &self.cache
    }

    /// The provider named `name`.
    pub fn get(&self, name: &str) -> Option<&Stack> {
        self.services.get(name).map(|(_, boxed)| boxed)
    }

    /// The provider named `name`, unboxed, for a leaf to wrap.
    fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.services.get(name).map(|(upstream, _)| upstream)
    }

    /// Provider names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.services.keys().map(String::as_str)
    }
}

fn mock(name: &str, spec: &MockSpec, models: &[String]) -> Mock {
    let mut b = Mock::builder()
        .name(name)
        .latency(spec.latency)
        .chunk_delay(spec.chunk_delay)
        .failure_rate(spec.failure_rate);
    if let Some(s) = spec.failure_status {
        b = b.failure_status(s);
    }
    if let Some(s) = spec.status {
        b = b.status(s);
    }
    if let Some(c) = &spec.content {
        b = b.content(c.clone());
    }
    if let Some((p, c)) = spec.usage {
        b = b.usage(p, c);
    }
    if !models.is_empty() {
        b = b.models(models.to_vec());
    }
    b.build()
}

/// What a node inherits from its ancestors.
#[derive(Clone, Debug, Default)]
struct Inherited {
    params: Map<String, Value>,
    retry: Option<RetrySpec>,
    timeout: Option<Duration>,
    breaker: Option<BreakerSpec>,
    cache: Option<CacheSettings>,
    hooks: Option<portcullis_guard::HookSet>,
}

impl Inherited {
    fn child(&self, node: &Node) -> Self {
        let mut params = self.params.clone();
        for (k, v) in &node.override_params {
            params.insert(k.clone(), v.clone());
        }
        Self {
            params,
            retry: node.retry.clone().or_else(|| self.retry.clone()),
            timeout: node.request_timeout.or(self.timeout),
            breaker: node.breaker.clone().or_else(|| self.breaker.clone()),
            cache: node.cache.or(self.cache),
            // Portkey's rule: a node that names any hook replaces every hook it inherits.
            hooks: match &node.hooks {
                Some(set) if set.defined => Some(set.clone()),
                _ => self.hooks.clone(),
            },
        }
    }
}

/// What a compiled tree may cost a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompileLimits {
    /// Upstream calls one request may make across all retries and fallbacks of the tree.
    pub max_attempts: u32,
    /// The limits its conditions' regexes are built within.
    pub regex: RegexLimits,
}

impl Default for CompileLimits {
    fn default() -> Self {
        Self {
            max_attempts: crate::config::DEFAULT_MAX_ATTEMPTS,
            regex: RegexLimits::default(),
        }
    }
}

/// Compiles a routing tree into a stack over `providers`, under `limits`.
pub fn compile(
    node: &Node,
    providers: &Providers,
    limits: &CompileLimits,
) -> Result<Stack, ConfigError> {
    let tree = compile_node(node, providers, &Inherited::default(), limits)?;
    Ok(BoxCloneSyncService::new(
        AttemptLimitLayer::new(limits.max_attempts).layer(tree),
    ))
}

fn compile_node(
    node: &Node,
    providers: &Providers,
    parent: &Inherited,
    limits: &CompileLimits,
) -> Result<Stack, ConfigError> {
    let inherited = parent.child(node);
    match &node.kind {
        NodeKind::Leaf { provider } => {
            let service = providers
                .upstream(provider)
                .ok_or_else(|| {
                    ConfigError::new(&node.path, format!("unknown provider `{provider}`"))
                })?
                .clone();
            let limits = providers
                .limited
                .contains(provider)
                .then(|| providers.leaf_limits.clone())
                .flatten();
            leaf(service, provider, node, &inherited, providers, limits)
        }
        NodeKind::Group {
            mode,
            targets,
            balancer,
            conditions,
            default,
            on_status_codes,
        } => {
            let children = targets
                .iter()
                .map(|t| compile_node(t, providers, &inherited, limits))
                .collect::<Result<Vec<_>, _>>()?;
            match mode {
                Mode::Single => Ok(single(children.into_iter().next().expect("one target"))),
                Mode::LoadBalance => loadbalance(node, targets, children, balancer),
                Mode::Fallback => {
                    let mut builder = Fallback::builder();
                    for child in children {
                        builder = builder.target(child);
                    }
                    if let Some(codes) = on_status_codes {
                        builder = builder.on_status_codes(codes.iter().copied());
                    }
                    let fallback = builder.build().map_err(|e| {
                        ConfigError::from_build(&format!("{}.strategy", node.path), e)
                    })?;
                    Ok(BoxCloneSyncService::new(fallback))
                }
                Mode::Conditional => conditional(
                    node,
                    targets,
                    children,
                    conditions,
                    default.as_deref(),
                    limits.regex,
                ),
            }
        }
    }
}

/// `loadbalance`: a weighted choice among ready targets (or another balancer).
fn loadbalance(
    node: &Node,
    targets: &[Node],
    children: Vec<Stack>,
    balancer: &Balancer,
) -> Result<Stack, ConfigError> {
    let strategy = match balancer {
        Balancer::Weighted => Strategy::Weighted,
        Balancer::LeastInFlight => Strategy::LeastInFlight,
        Balancer::PeakEwma => Strategy::PeakEwma(PeakEwma::new()),
        Balancer::Sticky(StickyKey::Metadata(field)) => Strategy::Sticky(Sticky::metadata(field)),
        Balancer::Sticky(StickyKey::Header(name)) => Strategy::Sticky(Sticky::header(
            http::HeaderName::try_from(name.as_str()).expect("checked when parsed"),
        )),
    };
    let mut builder = Balance::builder().strategy(strategy);
    for (i, (target, service)) in targets.iter().zip(children).enumerate() {
        // Names key sticky choices: a target's own name, else its place.
        let name = target
            .name
            .clone()
            .unwrap_or_else(|| format!("targets[{i}]"));
        builder = builder.target(Target::new(name, service).weight(target.weight));
    }
    let balance = builder
        .build()
        .map_err(|e| ConfigError::from_build(&node.path, e))?;
    Ok(BoxCloneSyncService::new(balance))
}

/// `conditional`: the first condition that matches names the target, else the default.
fn conditional(
    node: &Node,
    targets: &[Node],
    children: Vec<Stack>,
    conditions: &[Value],
    default: Option<&str>,
    regex: RegexLimits,
) -> Result<Stack, ConfigError> {
    // The builder's paths are `targets[i].name` (below the node) or `conditions[..]` and
    // `default` (below its strategy).
    let strategy_path = format!("{}.strategy", node.path);
    let err = |e: BuildError| {
        let prefix = if e.path().starts_with("targets") {
            &node.path
        } else {
            &strategy_path
        };
        ConfigError::from_build(prefix, e)
    };
    let mut builder = ConditionalRouter::builder().regex_limits(regex);
    for (target, service) in targets.iter().zip(children) {
        let name = target
            .name
            .clone()
            .expect("conditional targets are named (checked when parsed)");
        builder = builder.target(name, service);
    }
    builder = builder
        .conditions(&Value::Array(conditions.to_vec()))
        .map_err(err)?;
    if let Some(default) = default {
        builder = builder.default(default);
    }
    Ok(BoxCloneSyncService::new(builder.build().map_err(err)?))
}

/// `single`: the one target, recorded as `targets[0]`.
fn single(target: Stack) -> Stack {
    use portcullis_core::context::TargetPath;
    // On the request too, as the multi-target layers do, so the attempts record the path.
    let target = target
        .map_request(|mut req: Request<BufferedBody>| {
            TargetPath::enter(&mut req, 0);
            req
        })
        .map_response(|mut r: Response<Body>| {
            TargetPath::answered(&mut r, 0);
            r
        });
    BoxCloneSyncService::new(target)
}

/// A leaf: its provider and the layers its config asks for, as one type boxed once.
fn leaf(
    provider: Upstream,
    name: &str,
    node: &Node,
    inherited: &Inherited,
    providers: &Providers,
    limits: Option<BudgetLayer<AnyStore>>,
) -> Result<Stack, ConfigError> {
    let cache = &providers.cache;
    let params =
        (!inherited.params.is_empty()).then(|| OverrideParamsLayer::new(inherited.params.clone()));
    let retry = match (&inherited.retry, inherited.timeout) {
        (None, None) => None,
        (spec, timeout) => Some(RetryLayer::new(retry_policy(spec.as_ref(), timeout, node)?)),
    };
    let breaker = inherited
        .breaker
        .as_ref()
        .map(|spec| providers.breaker(spec, name, node))
        .transpose()?;
    // Input hooks outside the cache (their mutators change the request before it is keyed;
    // a denied request never reaches it), output hooks inside it (an answer a guard failed is
    // never stored).
    let (input, output) = match &inherited.hooks {
        Some(set) if !set.is_empty() => {
            let mut before = set.clone();
            before.after.clear();
            let mut after = set.clone();
            after.before.clear();
            let layer = |hooks: portcullis_guard::HookSet| {
                (!hooks.is_empty())
                    .then(|| portcullis_guard::GuardLayer::builder().hooks(hooks).build())
            };
            (layer(before), layer(after))
        }
        _ => (None, None),
    };
    let leaf = ServiceBuilder::new()
        // Once per request, before the key is computed: the cache keys what the provider sees.
        .option_layer(params)
        .option_layer(input)
        // Always present: a request may turn it on with `x-portkey-cache`.
        .layer(cache.layer(inherited.cache, name))
        .option_layer(output)
        // The provider's own limits: after the cache (a hit spends nothing), once per call of
        // this leaf (its retries are one call: a refusal of ours is never retried).
        .option_layer(limits.map(|l| {
            let provider = portcullis_core::context::ProviderName(Arc::from(name));
            tower::ServiceBuilder::new()
                .map_request(move |mut req: Request<BufferedBody>| {
                    req.extensions_mut().insert(provider.clone());
                    req
                })
                .layer(l)
        }))
        .option_layer(breaker)
        .option_layer(retry)
        // Innermost, so that every call that would reach the provider, and only those, spends.
        .layer(SpendAttemptLayer::new().provider(name))
        .service(provider);
    Ok(BoxCloneSyncService::new(leaf))
}

/// The retry policy of a leaf with `retry` or `request_timeout` (a timeout alone is retry's
/// per-attempt timeout with no retries).
fn retry_policy(
    spec: Option<&RetrySpec>,
    timeout: Option<Duration>,
    node: &Node,
) -> Result<RetryPolicy, ConfigError> {
    let mut policy = RetryPolicy::builder(spec.map_or(0, |s| s.attempts))
        .use_retry_after_header(spec.is_some_and(|s| s.use_retry_after_header));
    if let Some(codes) = spec.and_then(|s| s.on_status_codes.clone()) {
        policy = policy.on_status_codes(codes);
    }
    if let Some(after) = timeout {
        policy = policy.attempt_timeout(after);
    }
    policy
        .build()
        .map_err(|e| ConfigError::from_build(&format!("{}.retry", node.path), e))
}

/// One circuit per leaf: the same provider at two places in the tree fails separately.
fn breaker_layer(
    spec: &BreakerSpec,
    name: &str,
    node: &Node,
) -> Result<CircuitBreakerLayer, ConfigError> {
    let mut policy = BreakerPolicy::new();
    if let Some(n) = spec.consecutive_failures {
        policy = policy.consecutive_failures(n);
    }
    if let Some(r) = spec.failure_rate {
        policy = policy.failure_rate(r);
    }
    if let Some(n) = spec.minimum_requests {
        policy = policy.minimum_requests(n);
    }
    if let Some(w) = spec.window {
        policy = policy.window(w);
    }
    if let Some(c) = spec.cooldown {
        policy = policy.cooldown(c);
    }
    CircuitBreakerLayer::builder()
        .name(format!("{name} ({})", node.path))
        .policy(policy)
        .build()
        .map_err(|e| ConfigError::from_build(&format!("{}.circuit_breaker", node.path), e))
}

/// Shared, compiled routing: the file's tree and the providers it was built over.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// The providers.
    pub providers: Arc<Providers>,
    /// The file's routing tree, compiled.
    pub default: Option<Stack>,
    /// The limits.
    pub budgets: Budgets,
    /// The saved configs, by id.
    pub saved: BTreeMap<String, Stack>,
    /// The prompts' own trees (`config` given as an object), by prompt id.
    pub prompt_trees: BTreeMap<String, Stack>,
    /// The prompt templates, compiled.
    pub(crate) templates: Arc<crate::prompts::Templates>,
}

impl Compiled {
    /// Builds the providers and the file's tree.
    pub fn new(config: &Config) -> Result<Self, ConfigError> {
        Self::new_keeping(config, &Kept::default())
    }

    /// Each leaf's circuit-breaker state, by the leaf's path and provider.
    pub(crate) fn breaker_states(&self) -> BTreeMap<(String, String), portcullis_breaker::State> {
        let breakers = self
            .providers
            .breakers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        breakers
            .used
            .iter()
            .filter_map(|(key, layer)| {
                // The key is `PATH|PROVIDER|POLICY` (see `Providers::breaker`).
                let mut parts = key.splitn(3, '|');
                let (path, provider) = (parts.next()?, parts.next()?);
                let state = layer.circuit().state();
                Some(((path.to_owned(), provider.to_owned()), state))
            })
            .collect()
    }

    /// What a reload of this build keeps (see [`Kept`]).
    pub fn kept(&self, config: &Config) -> Kept {
        let breakers = self
            .providers
            .breakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .used
            .clone();
        Kept {
            cache: Some((config.server.cache.clone(), self.providers.cache.clone())),
            limits_store: self.budgets.store.clone(),
            breakers,
        }
    }

    /// Builds `config`, keeping what `kept` holds of a running build.
    pub fn new_keeping(config: &Config, kept: &Kept) -> Result<Self, ConfigError> {
        let budgets = Budgets::build_keeping(config, kept)?;
        let providers = Arc::new(Providers::build_keeping(config, &budgets, kept)?);
        let limits = CompileLimits {
            max_attempts: config.server.max_attempts,
            regex: RegexLimits::default(),
        };
        let default = config
            .routing
            .as_ref()
            .map(|node| compile(node, &providers, &limits))
            .transpose()?;
        let saved = config
            .configs
            .iter()
            .map(|(id, node)| Ok((id.clone(), compile(node, &providers, &limits)?)))
            .collect::<Result<_, ConfigError>>()?;
        let prompt_trees = config
            .prompts
            .iter()
            .filter_map(|(id, p)| match &p.route {
                crate::config::PromptRoute::Tree(node) => Some((id, node)),
                _ => None,
            })
            .map(|(id, node)| Ok((id.clone(), compile(node, &providers, &limits)?)))
            .collect::<Result<_, ConfigError>>()?;
        let templates = Arc::new(crate::prompts::Templates::new(
            &config.prompts,
            &config.partials,
        )?);
        Ok(Self {
            providers,
            default,
            budgets,
            saved,
            prompt_trees,
            templates,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients(request_timeout: Option<Duration>) -> Clients {
        let server = crate::config::Server {
            request_timeout,
            ..Default::default()
        };
        Clients::new(&server).unwrap()
    }

    #[test]
    fn a_provider_arms_no_timer_only_when_the_request_timeout_always_comes_first() {
        let secs = Duration::from_secs;
        let default = Some(secs(600));
        let first =
            |request, response| Clients::outer_deadline_first(Some(&clients(request)), response);
        // A request timeout shorter than the provider's (its own, or the default 600 s).
        assert!(first(Some(secs(30)), None));
        assert!(first(Some(secs(30)), Some(secs(90))));
        // Equal timeouts (the defaults) fall due together, and the provider's 504 answers; a
        // provider's own shorter timeout, a longer request timeout, none at all, or no server
        // settings (a provider checked alone): the provider keeps its timer.
        assert!(!first(default, None));
        assert!(!first(Some(secs(30)), Some(secs(30))));
        assert!(!first(default, Some(secs(30))));
        assert!(!first(Some(secs(601)), None));
        assert!(!first(None, None));
        assert!(!Clients::outer_deadline_first(None, None));
    }
}
