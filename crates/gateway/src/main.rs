//! `portcullis`: the gateway binary.
//!
//! ```text
//! portcullis --config FILE [--listen ADDR] [--log-format text|json]   serve
//! portcullis check --config FILE             validate a config and print the resolved tree
//! portcullis import litellm FILE             print a LiteLLM config.yaml as a Portcullis config
//! ```
//!
//! `kill -HUP` reloads the config file: it is read, checked and compiled, then swapped in
//! (requests in flight finish on the old one); a file that fails keeps the old one running.
//!
//! `--config` takes JSON or YAML; a LiteLLM proxy `config.yaml` is recognised by its
//! `model_list` and served as it is (listening on 127.0.0.1:4000 unless it says otherwise).
//!
//! Logs go to stdout through a writer on a thread of its own, so a request's log line costs
//! no write and no wake-up on the request's path: lines are gathered and written at most
//! every 5 ms, and never dropped (a full buffer makes loggers wait; see
//! `portcullis_gateway::log_writer`). Colours only when stdout is a terminal
//! and `NO_COLOR` is unset; `--log-format json` writes one JSON object per line.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use portcullis_gateway::{Config, Gateway, server};
use tracing_subscriber::filter::Targets;

// Per-request allocations dominate glibc malloc's time under load (contended arenas,
// consolidation); mimalloc's thread-local heaps cut the gateway's CPU per request.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage:
  portcullis --config FILE [--listen ADDR] [--log-format text|json]
                                             serve (default listen 127.0.0.1:8787, text logs)
  portcullis check --config FILE             validate a config and print the resolved tree
  portcullis import litellm FILE             print a LiteLLM config.yaml as a Portcullis config";

struct Args {
    check: bool,
    config: PathBuf,
    listen: Option<String>,
    log_format: LogFormat,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

fn args() -> Result<Args, String> {
    let mut check = false;
    let mut config = None;
    let mut listen = None;
    let mut log_format = LogFormat::Text;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "check" => check = true,
            "--config" | "-c" => config = Some(it.next().ok_or("--config needs a file")?),
            "--listen" | "-l" => listen = Some(it.next().ok_or("--listen needs an address")?),
            "--log-format" => {
                log_format = match it.next().as_deref() {
                    Some("text") => LogFormat::Text,
                    Some("json") => LogFormat::Json,
                    _ => return Err("--log-format takes `text` or `json`".to_owned()),
                }
            }
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    let config = config.ok_or("--config FILE is required")?.into();
    Ok(Args {
        check,
        config,
        listen,
        log_format,
    })
}

/// `portcullis import litellm FILE`.
fn import_litellm(file: &str) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {file}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let env = |name: &str| std::env::var(name).ok();
    let imported = portcullis_gateway::litellm::parse_yaml(&text)
        .and_then(|v| portcullis_gateway::litellm::import(&v, &env));
    match imported {
        Ok(import) => {
            print!("{}", portcullis_gateway::litellm::render(&import));
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {file}: {err}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let [cmd, kind, file] = argv.as_slice()
        && cmd == "import"
    {
        if kind != "litellm" {
            eprintln!("error: import takes `litellm`\n{USAGE}");
            return ExitCode::from(2);
        }
        return import_litellm(file);
    }
    let args = match args() {
        Ok(a) => a,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("error: {msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(err) => {
            eprintln!("error: {}: {err}", args.config.display());
            return ExitCode::FAILURE;
        }
    };
    if let Some(listen) = &args.listen {
        match listen.parse() {
            Ok(addr) => config.server.listen = addr,
            Err(_) => {
                eprintln!("error: --listen: `{listen}` is not an address like 127.0.0.1:8787");
                return ExitCode::from(2);
            }
        }
    }
    if args.check {
        return check(config, &args.config);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config, args.config, args.log_format))
}

fn check(config: Config, path: &Path) -> ExitCode {
    let gateway = match Gateway::new(config) {
        Ok(g) => g,
        Err(err) => {
            eprintln!("error: {}: {err}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let config = gateway.config();
    println!("config OK: {}", path.display());
    println!(
        "providers: {}",
        config
            .providers
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    );
    match &config.routing {
        Some(node) => print!("{node}"),
        None => println!(
            "no routing tree: requests name a provider with x-portkey-virtual-key or send x-portkey-config"
        ),
    }
    for (id, node) in &config.configs {
        println!("saved config `{id}`:");
        print!("{node}");
    }
    if !config.prompts.is_empty() {
        let ids: Vec<&str> = config.prompts.keys().map(String::as_str).collect();
        println!("prompts: {}", ids.join(", "));
    }
    ExitCode::SUCCESS
}

/// On SIGHUP: read the file again and swap it in; a file that does not read or build leaves
/// the running config in place, and the log says why.
fn reload_on_hangup(gateway: Gateway, path: PathBuf) {
    // The handler is installed here, before the caller logs that it listens, not in the task:
    // a SIGHUP sent as soon as that line shows must reload, not find no handler (and end the
    // process, or be lost where SIGHUP is ignored).
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: reloading is off");
            return;
        };
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let _ = portcullis_gateway::reload::reload_from(&gateway, &path);
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (gateway, path);
}

/// The log filter: `RUST_LOG` as `target=level` directives, else `info`.
fn log_filter() -> Targets {
    text_log_targets(std::env::var("RUST_LOG").ok().as_deref())
}

/// The text log's targets from `RUST_LOG` (default `info`).
fn text_log_targets(rust_log: Option<&str>) -> Targets {
    rust_log
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO))
}

/// Whether request spans record their results. The request span is the context of the lines
/// logged inside a request (its trace id, model, operation); its results (status, usage,
/// attempts, ...) are in the request's own log line, so the text log does not need them
/// recorded unless it shows the tag layer at `debug`. An OTLP exporter needs them.
fn span_results(otlp: bool, filter: &Targets) -> bool {
    otlp || filter.would_enable(portcullis_tag::SPAN_TARGET, &tracing::Level::DEBUG)
}

/// Whether log lines carry ANSI colours: only for a terminal, and not when `NO_COLOR` is set
/// (<https://no-color.org>).
fn ansi(is_terminal: bool, no_color: bool) -> bool {
    is_terminal && !no_color
}

/// Whether each request's log line is written straight to the log writer
/// (`server::request_log`) rather than as an event for the text layer to format: only for
/// text without colours, the bytes that path writes, and only when the filter lets the text
/// layer write the line. (With OTLP on, the event is logged whatever the filter says, for
/// the OTLP layer, which keeps only events inside a span, where the line stays an event.)
fn request_lines_direct(format: LogFormat, ansi: bool, filter: &Targets) -> bool {
    format == LogFormat::Text
        && !ansi
        && filter.would_enable(server::request_log::TARGET, &tracing::Level::INFO)
}

/// The log's subscriber without an exporter: `filter` for the whole subscriber, then the
/// layer that formats lines onto `writer`.
///
/// A filter for one layer (`with_filter`) would keep per-thread state in tracing-subscriber: a
/// check it refuses that the subscriber as a whole lets through (an `enabled!` with no event
/// after it, such as the tag layer's for span results, per request) leaves that state saying
/// "refused" for the next event on the thread, which the layer then drops (a reload's line,
/// say). A global filter keeps no such state, and costs less per event and span. (With an
/// exporter beside the text layer the filter has to be the text layer's alone.)
fn log_subscriber<W>(
    format: LogFormat,
    ansi: bool,
    writer: W,
    filter: Targets,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    tracing_subscriber::registry()
        .with(filter)
        .with(log_layer(format, ansi, writer))
}

/// The layer that formats log lines onto `writer`.
fn log_layer<S, W>(
    format: LogFormat,
    ansi: bool,
    writer: W,
) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::Layer;
    let layer = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_timer(text_fields::UtcMicros)
        .with_writer(writer);
    match format {
        LogFormat::Text => layer
            .with_ansi(ansi)
            .fmt_fields(text_fields::TextFields)
            .boxed(),
        LogFormat::Json => layer.json().boxed(),
    }
}

/// The fields of text log lines and of the spans they name, written as `DefaultFields` writes
/// them, byte for byte, for less work.
///
/// Every request records about twenty fields (its span's, and its log line's), and the text
/// layer formats each one as it is recorded. `DefaultFields` sends every value through
/// `core::fmt` with ANSI styles around the name (empty ones when colours are off) and
/// escapes every string character by character: about a tenth of the gateway's instructions
/// per request went there. Without colours, names are written as they are and a string of
/// printable ASCII is written in runs between its escapes; everything else (colours,
/// `message`, errors, fields of `log` records, other strings) takes `DefaultFields`' own
/// path. Strings, integers and times are written by the pieces that also write the request
/// log line directly (`portcullis_gateway::server::request_log`), so both read the same.
mod text_fields {
    use std::fmt::{self, Write as _};

    use portcullis_gateway::server::request_log;

    use tracing::field::{Field, Visit};
    use tracing_subscriber::field::{RecordFields, VisitOutput};
    use tracing_subscriber::fmt::FormatFields;
    use tracing_subscriber::fmt::format::{DefaultFields, DefaultVisitor, Writer};
    use tracing_subscriber::fmt::time::FormatTime;

    /// See the [module docs](self).
    #[derive(Debug, Default, Clone, Copy)]
    pub(super) struct TextFields;

    impl<'w> FormatFields<'w> for TextFields {
        fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
            if writer.has_ansi_escapes() {
                return DefaultFields::new().format_fields(writer, fields);
            }
            let mut buf = FieldBuf::new(writer);
            let mut visitor = Visitor {
                buf: &mut buf,
                is_empty: true,
                result: Ok(()),
            };
            fields.record(&mut visitor);
            visitor.result?;
            buf.flush()
        }
    }

    /// The fields of one record, gathered on the stack and handed to the writer in as few
    /// writes as fit: the string a span keeps its fields in starts empty, and a write per
    /// name, `=` and value grew it five or six times per request span (a third of the span's
    /// cost). What does not fit is handed on as it comes.
    struct FieldBuf<'w> {
        writer: Writer<'w>,
        bytes: [u8; 512],
        len: usize,
    }

    impl<'w> FieldBuf<'w> {
        fn new(writer: Writer<'w>) -> Self {
            Self {
                writer,
                bytes: [0; 512],
                len: 0,
            }
        }

        /// Hands what is gathered to the writer.
        fn flush(&mut self) -> fmt::Result {
            if self.len > 0 {
                // Only whole `&str`s were copied in.
                let gathered = std::str::from_utf8(&self.bytes[..self.len]).expect("whole strings");
                self.writer.write_str(gathered)?;
                self.len = 0;
            }
            Ok(())
        }
    }

    impl fmt::Write for FieldBuf<'_> {
        #[inline]
        fn write_str(&mut self, s: &str) -> fmt::Result {
            if let Some(room) = self.bytes.get_mut(self.len..self.len + s.len()) {
                room.copy_from_slice(s.as_bytes());
                self.len += s.len();
                return Ok(());
            }
            self.flush()?;
            match self.bytes.get_mut(..s.len()) {
                Some(room) => {
                    room.copy_from_slice(s.as_bytes());
                    self.len = s.len();
                    Ok(())
                }
                None => self.writer.write_str(s),
            }
        }

        /// Most characters written are the separators around names and values: one byte.
        #[inline]
        fn write_char(&mut self, c: char) -> fmt::Result {
            if c.is_ascii()
                && let Some(slot) = self.bytes.get_mut(self.len)
            {
                *slot = c as u8;
                self.len += 1;
                return Ok(());
            }
            self.write_str(c.encode_utf8(&mut [0; 4]))
        }
    }

    struct Visitor<'b, 'w> {
        /// Written directly (not through a `Writer`'s `dyn fmt::Write`): a request span's
        /// fields take about thirty writes.
        buf: &'b mut FieldBuf<'w>,
        is_empty: bool,
        result: fmt::Result,
    }

    /// Fields `DefaultFields` treats apart: the message (escaped for terminals) and the
    /// metadata of `log` records (left out when `tracing-log` is on).
    fn special(name: &str) -> bool {
        name == "message" || name.starts_with("log.")
    }

    impl Visitor<'_, '_> {
        /// The separator and `name=`, as `DefaultFields` writes them without colours.
        fn name(&mut self, field: &Field) -> bool {
            if self.result.is_err() {
                return false;
            }
            let name = field.name();
            let name = name.strip_prefix("r#").unwrap_or(name);
            if self.is_empty {
                self.is_empty = false;
            } else if let Err(e) = self.buf.write_char(' ') {
                self.result = Err(e);
                return false;
            }
            self.result = self
                .buf
                .write_str(name)
                .and_then(|()| self.buf.write_char('='));
            self.result.is_ok()
        }

        /// Hands one field to `DefaultFields`' own visitor.
        fn default(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
            if self.result.is_err() {
                return;
            }
            let mut visitor = DefaultVisitor::new(Writer::new(&mut *self.buf), self.is_empty);
            record(&mut visitor);
            self.result = visitor.finish();
            // Only a message, an error or a `log` record's fields get here; each is written
            // (a `log` record's, when left out, follow its message).
            self.is_empty = false;
        }
    }

    /// The time of a log line as tracing-subscriber's default timer writes it (RFC 3339, UTC,
    /// microseconds: `2026-12-07T02:00:12.111985Z`), with its digits written directly: the
    /// default's eight padded integer formats were a quarter of the request log line's cost.
    #[derive(Debug, Default, Clone, Copy)]
    pub(super) struct UtcMicros;

    impl FormatTime for UtcMicros {
        fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
            match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
                Ok(since) => write_utc_micros(w, since),
                // Before 1970: the default timer knows how to write it.
                Err(_) => tracing_subscriber::fmt::time::SystemTime.format_time(w),
            }
        }
    }

    /// Writes the instant `since` the Unix epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ`, as the
    /// request log line writes it; past the year 9999 as the default timer does.
    pub(super) fn write_utc_micros(w: &mut Writer<'_>, since: std::time::Duration) -> fmt::Result {
        match request_log::write_utc_micros(w, since) {
            Some(written) => written,
            None => tracing_subscriber::fmt::time::SystemTime.format_time(w),
        }
    }

    impl Visit for Visitor<'_, '_> {
        fn record_str(&mut self, field: &Field, value: &str) {
            if special(field.name()) {
                return self.default(|v| v.record_str(field, value));
            }
            if self.name(field) {
                self.result = request_log::write_debug_str(self.buf, value);
            }
        }

        fn record_i64(&mut self, field: &Field, value: i64) {
            if special(field.name()) {
                return self.default(|v| v.record_i64(field, value));
            }
            if self.name(field) {
                if value < 0 {
                    self.result = self.buf.write_char('-');
                }
                if self.result.is_ok() {
                    self.result = request_log::write_decimal(self.buf, value.unsigned_abs());
                }
            }
        }

        fn record_u64(&mut self, field: &Field, value: u64) {
            if special(field.name()) {
                return self.default(|v| v.record_u64(field, value));
            }
            if self.name(field) {
                self.result = request_log::write_decimal(self.buf, value);
            }
        }

        fn record_bool(&mut self, field: &Field, value: bool) {
            if special(field.name()) {
                return self.default(|v| v.record_bool(field, value));
            }
            if self.name(field) {
                self.result = self.buf.write_str(if value { "true" } else { "false" });
            }
        }

        fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
            self.default(|v| v.record_error(field, value));
        }

        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            if special(field.name()) {
                return self.default(|v| v.record_debug(field, value));
            }
            if self.name(field) {
                self.result = write!(self.buf, "{value:?}");
            }
        }
    }
}

async fn run(config: Config, path: PathBuf, log_format: LogFormat) -> ExitCode {
    #[cfg(feature = "otlp")]
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let stdout = std::io::stdout();
    let colours = ansi(stdout.is_terminal(), std::env::var_os("NO_COLOR").is_some());
    // Kept to the end of `run`: dropping it flushes the lines still queued.
    let (writer, _log_guard) = portcullis_gateway::log_writer::batched(stdout);
    let filter = log_filter();
    #[cfg(feature = "otlp")]
    let exporting = config.server.otlp_endpoint.is_some();
    #[cfg(not(feature = "otlp"))]
    let exporting = false;
    portcullis_tag::record_span_results(span_results(exporting, &filter));
    // Whether request lines show is the text filter's say, asked once here rather than per
    // request (see `server::request_log::shown`).
    server::request_log::shown(
        filter.would_enable(server::request_log::TARGET, &tracing::Level::INFO),
    );
    if request_lines_direct(log_format, colours, &filter) {
        // Nothing set a writer before this, the only call: the result is always `Ok`.
        let _ = server::request_log::write_directly_to(writer.clone());
    }
    #[cfg(feature = "otlp")]
    let otlp = match &config.server.otlp_endpoint {
        None => None,
        Some(endpoint) => match portcullis_tag::otlp::Otlp::builder(endpoint.clone())
            .service_name("portcullis")
            .build()
        {
            Ok(o) => Some(o),
            Err(err) => {
                eprintln!("error: server.otlp_endpoint: {err}");
                return ExitCode::FAILURE;
            }
        },
    };
    // With an exporter, which takes every span, the filter is the text layer's alone.
    #[cfg(feature = "otlp")]
    if let Some(otlp) = &otlp {
        tracing_subscriber::registry()
            .with(tracing_subscriber::Layer::with_filter(
                log_layer(log_format, colours, writer),
                filter,
            ))
            .with(otlp.layer())
            .init();
    } else {
        log_subscriber(log_format, colours, writer, filter).init();
    }
    #[cfg(not(feature = "otlp"))]
    log_subscriber(log_format, colours, writer, filter).init();

    let prometheus = match portcullis_tag::Prometheus::install() {
        Ok(p) => p,
        Err(err) => {
            eprintln!("error: cannot install the metrics recorder: {err}");
            return ExitCode::FAILURE;
        }
    };
    prometheus.spawn_upkeep(Duration::from_secs(5));
    let gateway = match Gateway::with_metrics(config, Some(prometheus)) {
        Ok(g) => g,
        Err(err) => {
            eprintln!("error: {}: {err}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let listen = gateway.config().server.listen;
    let grace = gateway.config().server.shutdown_timeout;
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(err) => {
            eprintln!("error: cannot listen on {listen}: {err}");
            return ExitCode::FAILURE;
        }
    };
    reload_on_hangup(gateway.clone(), path.clone());
    tracing::info!(
        "portcullis listening on http://{}",
        listener.local_addr().map_or(listen, |a| a)
    );
    if gateway.config().server.watch_config {
        let watch = portcullis_gateway::reload::watch(
            gateway.clone(),
            path.clone(),
            portcullis_gateway::reload::WATCH_INTERVAL,
        );
        tokio::spawn(watch);
    }
    let code = match server::serve(listener, gateway, server::shutdown_signal(), grace).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    };
    #[cfg(feature = "otlp")]
    if let Some(otlp) = otlp
        && let Err(err) = otlp.shutdown().await
    {
        eprintln!("warning: OTLP spans were not all flushed: {err}");
    }
    code
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(format: LogFormat, ansi: bool) -> String {
        let out = Capture::default();
        let writer = out.clone();
        let subscriber =
            tracing_subscriber::registry().with(log_layer(format, ansi, move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("gen_ai.request", portcullis.trace_id = "t-1");
            let _entered = span.enter();
            tracing::warn!(status = 502, "upstream failed");
        });
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn span_results_are_recorded_for_an_exporter_or_a_debug_log() {
        let results = |otlp, rust_log| span_results(otlp, &text_log_targets(rust_log));
        assert!(!results(false, None));
        assert!(!results(false, Some("info")));
        assert!(!results(false, Some("warn,portcullis=info")));
        assert!(results(false, Some("debug")));
        assert!(results(false, Some("info,portcullis_tag=debug")));
        assert!(results(true, None), "an exporter reads them");
        // The request span itself, and the request log line, are in the text log.
        let targets = text_log_targets(None);
        assert!(targets.would_enable(portcullis_tag::SPAN_TARGET, &tracing::Level::INFO));
        assert!(targets.would_enable("portcullis::request", &tracing::Level::INFO));
    }

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(ansi(true, false));
        assert!(!ansi(false, false), "redirected: no colours");
        assert!(!ansi(true, true), "NO_COLOR: no colours");
    }

    #[test]
    fn text_lines_without_ansi_carry_no_escape_codes() {
        let plain = logged(LogFormat::Text, false);
        assert!(plain.contains("upstream failed"), "{plain}");
        assert!(!plain.contains('\x1b'), "{plain:?}");
        assert!(logged(LogFormat::Text, true).contains('\x1b'));
    }

    /// The same events and spans through `DefaultFields` and through `TextFields`.
    fn both_field_formats(emit: fn()) -> (String, String) {
        use tracing_subscriber::fmt::format::FmtSpan;
        let run = |fast: bool| {
            let out = Capture::default();
            let writer = out.clone();
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .without_time()
                .with_span_events(FmtSpan::CLOSE)
                .with_writer(move || writer.clone());
            let layer: Box<dyn tracing_subscriber::Layer<_> + Send + Sync> = if fast {
                tracing_subscriber::Layer::boxed(layer.fmt_fields(text_fields::TextFields))
            } else {
                tracing_subscriber::Layer::boxed(layer)
            };
            tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), emit);
            String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
        };
        (run(false), run(true))
    }

    #[test]
    fn text_fields_write_what_default_fields_write() {
        #[derive(Debug)]
        struct Failure;
        impl std::fmt::Display for Failure {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("it broke")
            }
        }
        impl std::error::Error for Failure {}
        let (default, fast) = both_field_formats(|| {
            let span = tracing::info_span!(
                "gen_ai.request",
                otel.name = "chat bench-model",
                gen_ai.usage.input_tokens = tracing::field::Empty,
                portcullis.metadata = tracing::field::Empty,
                r#type = "r#-stripped",
            );
            span.record("gen_ai.usage.input_tokens", 24i64);
            span.record("portcullis.metadata", r#"{"plan":"paid","q":"a\b"}"#);
            let _entered = span.enter();
            let err: &(dyn std::error::Error + 'static) = &Failure;
            tracing::info!(
                target: "portcullis::request",
                peer = %"127.0.0.1:5000",
                path = "/v1/chat/completions",
                status = 200u64,
                negative = -3i64,
                smallest = i64::MIN,
                largest = u64::MAX,
                zero = 0u64,
                ok = true,
                ratio = 0.5f64,
                unicode = "café ✓",
                control = "tab\there\u{7f}",
                quote = "say \"hi\"",
                empty = "",
                debug = ?Some("x"),
                err,
            );
            tracing::warn!(status = 502, "upstream \u{1b}[31mfailed");
            tracing::warn!("message only");
            tracing::info!(after_message = 1u64, "{} {}", "formatted", 2);
        });
        assert!(default.contains("gen_ai.request{"), "{default}");
        assert!(default.contains("close"), "{default}");
        assert_eq!(fast, default);
    }

    #[test]
    fn fields_longer_than_the_stack_buffer_are_written_whole() {
        let (default, fast) = both_field_formats(|| {
            let long = "w".repeat(300);
            let span = tracing::info_span!(
                "gen_ai.request",
                first = long.as_str(),
                second = long.as_str(),
                late = tracing::field::Empty,
            );
            span.record("late", "é".repeat(400).as_str());
            let _entered = span.enter();
            tracing::info!(one = long.as_str(), two = "short", three = long.as_str());
            tracing::info!(whole = "v".repeat(1500).as_str());
        });
        assert!(default.contains(&"v".repeat(1500)), "{default}");
        assert!(default.contains(&"é".repeat(400)), "{default}");
        assert_eq!(fast, default);
    }

    #[test]
    fn times_read_as_the_default_timer_writes_them() {
        let written = |secs: u64, micros: u32| {
            let mut out = String::new();
            let w = &mut tracing_subscriber::fmt::format::Writer::new(&mut out);
            text_fields::write_utc_micros(
                w,
                Duration::from_secs(secs) + Duration::from_micros(u64::from(micros)),
            )
            .unwrap();
            out
        };
        assert_eq!(written(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(written(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(
            written(1_700_000_000, 123_456),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(
            written(1_735_689_599, 999_999),
            "2024-12-31T23:59:59.999999Z"
        );
        assert_eq!(written(4_102_444_800, 10), "2100-01-01T00:00:00.000010Z");
        assert_eq!(written(253_402_300_799, 0), "9999-12-31T23:59:59.000000Z");
    }

    #[test]
    fn text_fields_with_colours_are_default_fields() {
        let out = Capture::default();
        let writer = out.clone();
        let subscriber =
            tracing_subscriber::registry()
                .with(log_layer(LogFormat::Text, true, move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(path = "/v1/chat/completions", "coloured");
        });
        let line = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        // The name in italics, as `DefaultFields` writes it for a terminal.
        assert!(line.contains("\x1b[3mpath\x1b[0m"), "{line:?}");
    }

    /// The attempts of a request whose leaves answered in turn: each at a target path (none
    /// at the root), naming its provider or not, after some milliseconds, with a status or an
    /// error (`timeout`, `connect`).
    async fn attempts(
        answers: &[(&[u16], Option<&'static str>, u64, &'static str)],
    ) -> portcullis_core::attempts::Attempts {
        use portcullis_core::context::{AttemptBudget, TargetPath};
        use portcullis_core::error::{
            TimeoutPhase, UpstreamError, UpstreamErrorKind, UpstreamTimeout,
        };
        use portcullis_core::{BoxError, SpendAttemptLayer};
        use tower::{Layer, ServiceExt};
        let budget = AttemptBudget::new(16);
        for &(path, provider, ms, answer) in answers {
            let leaf = tower::service_fn(move |_req: http::Request<()>| async move {
                let after = Duration::from_millis(ms);
                tokio::time::advance(after).await;
                match answer {
                    "timeout" => Err::<http::Response<()>, BoxError>(
                        UpstreamTimeout::new(TimeoutPhase::Response, after).into(),
                    ),
                    "connect" => {
                        Err(UpstreamError::new(UpstreamErrorKind::Connect, "refused").into())
                    }
                    status => Ok(http::Response::builder()
                        .status(status.parse::<u16>().unwrap())
                        .body(())
                        .unwrap()),
                }
            });
            let layer = match provider {
                Some(name) => SpendAttemptLayer::new().provider(name),
                None => SpendAttemptLayer::new(),
            };
            let mut target = TargetPath::root();
            for &index in path {
                target.push(index);
            }
            let mut req = http::Request::new(());
            req.extensions_mut().insert(budget.clone());
            req.extensions_mut().insert(target);
            let _ = layer.layer(leaf).oneshot(req).await;
        }
        budget.attempts()
    }

    /// The text of `line` as the binary's text layer writes its event, and as the direct path
    /// writes it, each without its time (the layer reads the clock: the two times differ).
    fn both_request_lines(line: &server::request_log::RequestLine<'_>) -> (String, String) {
        use tracing_subscriber::Layer;
        let out = Capture::default();
        let writer = out.clone();
        let layer = log_layer(LogFormat::Text, false, move || writer.clone())
            .with_filter(text_log_targets(None));
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            line.event()
        });
        let through_tracing = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let mut direct = String::new();
        assert!(line.write_text(Duration::from_secs(1_700_000_000), &mut direct));
        let (time, direct) = direct.split_at(27);
        assert_eq!(time, "2023-11-14T22:13:20.000000Z");
        // The layer's time has the same layout: digits between the same separators.
        let (time, through_tracing) = through_tracing.split_at(27);
        let layout: String = time
            .chars()
            .map(|c| if c.is_ascii_digit() { '0' } else { c })
            .collect();
        assert_eq!(layout, "0000-00-00T00:00:00.000000Z", "{time:?}");
        (through_tracing.to_owned(), direct.to_owned())
    }

    #[tokio::test(start_paused = true)]
    async fn request_lines_written_directly_are_the_text_layers_bytes() {
        use portcullis_core::context::TargetPath;
        use server::request_log::RequestLine;
        let one = attempts(&[(&[], Some("upstream"), 0, "200")]).await;
        let several = attempts(&[
            (&[0], Some("a"), 12, "503"),
            (&[0], None, 9, "timeout"),
            (&[1, 65535], Some("b\\"), 1_234, "connect"),
            (&[1], Some("b"), 20, "200"),
        ])
        .await;
        let none = attempts(&[]).await;
        let mut answered = TargetPath::root();
        answered.push(1);
        let custom = http::Method::from_bytes(b"PURGE").unwrap();
        let plain = RequestLine {
            peer: "127.0.0.1:57784".parse().unwrap(),
            method: &http::Method::POST,
            path: "/v1/chat/completions",
            status: http::StatusCode::OK,
            elapsed: Duration::from_micros(170),
            trace_id: "618a0d6c-2a4b-4c7e-9d51-0f3b7c2e9a10",
            provider: "upstream",
            target: None,
            attempts: Some(&one),
        };
        let lines = [
            plain,
            RequestLine {
                path: "/v1/\"quoted\"/back\\slash\\",
                trace_id: "say \"hi\"",
                provider: "\\",
                ..plain
            },
            RequestLine {
                path: "/café/✓/\u{0}\t\n\r\u{1b}[31m\u{7f}",
                trace_id: "zero\u{200b}width e\u{301} \u{10ffff}",
                provider: "prov\u{85}ider ü",
                ..plain
            },
            RequestLine {
                method: &http::Method::GET,
                path: "/health",
                status: http::StatusCode::OK,
                trace_id: "",
                provider: "",
                target: None,
                attempts: None,
                ..plain
            },
            RequestLine {
                provider: "",
                target: Some(TargetPath::root()),
                attempts: Some(&none),
                ..plain
            },
            RequestLine {
                peer: "[fe80::1%7]:443".parse().unwrap(),
                method: &custom,
                status: http::StatusCode::BAD_GATEWAY,
                elapsed: Duration::from_nanos(3_600_000_123_456),
                provider: "b",
                target: Some(answered),
                attempts: Some(&several),
                ..plain
            },
            RequestLine {
                peer: "[::ffff:10.0.0.1]:1".parse().unwrap(),
                status: http::StatusCode::from_u16(999).unwrap(),
                elapsed: Duration::ZERO,
                ..plain
            },
            RequestLine {
                peer: "255.255.255.255:65535".parse().unwrap(),
                status: http::StatusCode::SWITCHING_PROTOCOLS,
                elapsed: Duration::from_nanos(999_499),
                ..plain
            },
            RequestLine {
                peer: "0.0.0.0:0".parse().unwrap(),
                elapsed: Duration::MAX,
                ..plain
            },
        ];
        for line in &lines {
            let (through_tracing, direct) = both_request_lines(line);
            assert_eq!(direct, through_tracing);
        }
        // The first reads as the binary wrote it before there was a direct path.
        let (_, direct) = both_request_lines(&lines[0]);
        assert_eq!(
            direct,
            "  INFO peer=127.0.0.1:57784 method=POST path=\"/v1/chat/completions\" status=200 \
             ms=0.170 trace_id=\"618a0d6c-2a4b-4c7e-9d51-0f3b7c2e9a10\" provider=\"upstream\" \
             target= attempts=upstream:200:0ms\n"
        );
        let (_, direct) = both_request_lines(&lines[5]);
        assert!(
            direct.contains(
                " target=targets[1] attempts=targets[0]/a:503:12ms,targets[0]:timeout:9ms,\
                 targets[1].targets[65535]/b\\:connect:1234ms,targets[1]/b:200:20ms\n"
            ),
            "{direct}"
        );
    }

    #[test]
    fn request_lines_are_written_directly_only_for_plain_text_that_shows_them() {
        let shown = text_log_targets(None);
        assert!(request_lines_direct(LogFormat::Text, false, &shown));
        assert!(
            !request_lines_direct(LogFormat::Text, true, &shown),
            "colours"
        );
        assert!(
            !request_lines_direct(LogFormat::Json, false, &shown),
            "JSON"
        );
        for hidden in ["warn", "info,portcullis::request=warn", "portcullis=off"] {
            let filter = text_log_targets(Some(hidden));
            assert!(
                !request_lines_direct(LogFormat::Text, false, &filter),
                "{hidden}"
            );
        }
        let named = text_log_targets(Some("warn,portcullis::request=info"));
        assert!(request_lines_direct(LogFormat::Text, false, &named));
    }

    #[test]
    fn an_event_after_a_check_the_filter_refuses_is_written() {
        let out = Capture::default();
        let writer = out.clone();
        let subscriber = log_subscriber(
            LogFormat::Text,
            false,
            move || writer.clone(),
            text_log_targets(None),
        );
        tracing::subscriber::with_default(subscriber, || {
            // A check the filter refuses (as an `enabled!` probe of a hidden target is).
            assert!(!tracing::enabled!(
                target: "portcullis_hidden_probe",
                tracing::Level::TRACE
            ));
            tracing::info!("config reloaded");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("INFO config reloaded"), "{text:?}");
    }

    #[test]
    fn json_lines_are_json_objects() {
        let line = logged(LogFormat::Json, true);
        assert!(!line.contains('\x1b'));
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(v["fields"]["message"], "upstream failed");
        assert_eq!(v["fields"]["status"], 502);
        assert_eq!(v["span"]["portcullis.trace_id"], "t-1");
    }
}
