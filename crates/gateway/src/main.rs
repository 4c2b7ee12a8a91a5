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

/// The text log's targets from `RUST_LOG` (default `info`). The request span is the context
/// of the lines logged inside a request (its trace id, model, operation); its results
/// (status, usage, attempts, ...) are in the request's own log line, so they are not recorded
/// for the text log unless asked for: at `debug` or by naming
/// `portcullis_tag::span_results`. An OTLP exporter records them whatever this says.
fn text_log_targets(rust_log: Option<&str>) -> Targets {
    let targets = rust_log
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let named = rust_log.is_some_and(|s| s.contains(portcullis_tag::RESULTS_TARGET));
    if named || targets.would_enable(portcullis_tag::RESULTS_TARGET, &tracing::Level::DEBUG) {
        targets
    } else {
        targets.with_target(
            portcullis_tag::RESULTS_TARGET,
            tracing_subscriber::filter::LevelFilter::OFF,
        )
    }
}

/// Whether log lines carry ANSI colours: only for a terminal, and not when `NO_COLOR` is set
/// (<https://no-color.org>).
fn ansi(is_terminal: bool, no_color: bool) -> bool {
    is_terminal && !no_color
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
/// path.
mod text_fields {
    use std::fmt;

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
            let mut visitor = Visitor {
                writer,
                is_empty: true,
                result: Ok(()),
            };
            fields.record(&mut visitor);
            visitor.result
        }
    }

    struct Visitor<'w> {
        writer: Writer<'w>,
        is_empty: bool,
        result: fmt::Result,
    }

    /// Fields `DefaultFields` treats apart: the message (escaped for terminals) and the
    /// metadata of `log` records (left out when `tracing-log` is on).
    fn special(name: &str) -> bool {
        name == "message" || name.starts_with("log.")
    }

    impl Visitor<'_> {
        /// The separator and `name=`, as `DefaultFields` writes them without colours.
        fn name(&mut self, field: &Field) -> bool {
            if self.result.is_err() {
                return false;
            }
            let name = field.name();
            let name = name.strip_prefix("r#").unwrap_or(name);
            if self.is_empty {
                self.is_empty = false;
            } else if let Err(e) = self.writer.write_char(' ') {
                self.result = Err(e);
                return false;
            }
            self.result = self
                .writer
                .write_str(name)
                .and_then(|()| self.writer.write_char('='));
            self.result.is_ok()
        }

        /// Hands one field to `DefaultFields`' own visitor.
        fn default(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
            if self.result.is_err() {
                return;
            }
            let mut visitor = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
            record(&mut visitor);
            self.result = visitor.finish();
            // Only a message, an error or a `log` record's fields get here; each is written
            // (a `log` record's, when left out, follow its message).
            self.is_empty = false;
        }
    }

    /// `str`'s `Debug` of printable ASCII: quoted, `"` and `\` escaped, every other
    /// character as it is; written in runs rather than character by character.
    fn debug_ascii(writer: &mut Writer<'_>, value: &str) -> fmt::Result {
        writer.write_char('"')?;
        let mut run = 0;
        for (at, byte) in value.bytes().enumerate() {
            if byte == b'"' || byte == b'\\' {
                writer.write_str(&value[run..at])?;
                writer.write_char('\\')?;
                // The escaped character opens the next run.
                run = at;
            }
        }
        writer.write_str(&value[run..])?;
        writer.write_char('"')
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

    /// Writes the instant `since` the Unix epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    pub(super) fn write_utc_micros(w: &mut Writer<'_>, since: std::time::Duration) -> fmt::Result {
        let secs = since.as_secs();
        let (days, time) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_from_days(days);
        if year > 9999 {
            // The default's own layout for years past 9999 (`+10000-…`).
            return tracing_subscriber::fmt::time::SystemTime.format_time(w);
        }
        let mut text = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, width: usize, mut n: u64| {
            for i in (at..at + width).rev() {
                text[i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, month);
        put(8, 2, day);
        put(11, 2, time / 3600);
        put(14, 2, time % 3600 / 60);
        put(17, 2, time % 60);
        put(20, 6, u64::from(since.subsec_micros()));
        w.write_str(std::str::from_utf8(&text).expect("digits and separators"))
    }

    /// Year, month and day of the `days`-th day after 1970-01-01 (proleptic Gregorian; Howard
    /// Hinnant's `civil_from_days`, for days on or after the epoch).
    fn civil_from_days(days: u64) -> (u64, u64, u64) {
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z % 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + u64::from(month <= 2);
        (year, month, day)
    }

    /// `value` in decimal, as its `Debug` writes it, without a formatter.
    fn decimal(writer: &mut Writer<'_>, mut value: u64) -> fmt::Result {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        writer.write_str(std::str::from_utf8(&digits[at..]).expect("digits"))
    }

    impl Visit for Visitor<'_> {
        fn record_str(&mut self, field: &Field, value: &str) {
            if special(field.name()) {
                return self.default(|v| v.record_str(field, value));
            }
            if !self.name(field) {
                return;
            }
            // One pass: printable ASCII or not, and whether anything in it needs a `\`.
            let (mut printable, mut escapes) = (true, false);
            for b in value.bytes() {
                printable &= (0x20..0x7f).contains(&b);
                escapes |= b == b'"' || b == b'\\';
            }
            self.result = match (printable, escapes) {
                (true, false) => self
                    .writer
                    .write_char('"')
                    .and_then(|()| self.writer.write_str(value))
                    .and_then(|()| self.writer.write_char('"')),
                (true, true) => debug_ascii(&mut self.writer, value),
                (false, _) => write!(self.writer, "{value:?}"),
            };
        }

        fn record_i64(&mut self, field: &Field, value: i64) {
            if special(field.name()) {
                return self.default(|v| v.record_i64(field, value));
            }
            if self.name(field) {
                if value < 0 {
                    self.result = self.writer.write_char('-');
                }
                if self.result.is_ok() {
                    self.result = decimal(&mut self.writer, value.unsigned_abs());
                }
            }
        }

        fn record_u64(&mut self, field: &Field, value: u64) {
            if special(field.name()) {
                return self.default(|v| v.record_u64(field, value));
            }
            if self.name(field) {
                self.result = decimal(&mut self.writer, value);
            }
        }

        fn record_bool(&mut self, field: &Field, value: bool) {
            if special(field.name()) {
                return self.default(|v| v.record_bool(field, value));
            }
            if self.name(field) {
                self.result = self.writer.write_str(if value { "true" } else { "false" });
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
                self.result = write!(self.writer, "{value:?}");
            }
        }
    }
}

async fn run(config: Config, path: PathBuf, log_format: LogFormat) -> ExitCode {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let stdout = std::io::stdout();
    let colours = ansi(stdout.is_terminal(), std::env::var_os("NO_COLOR").is_some());
    // Kept to the end of `run`: dropping it flushes the lines still queued.
    let (writer, _log_guard) = portcullis_gateway::log_writer::batched(stdout);
    let registry = tracing_subscriber::registry()
        .with(log_layer(log_format, colours, writer).with_filter(log_filter()));
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
    #[cfg(feature = "otlp")]
    registry.with(otlp.as_ref().map(|o| o.layer())).init();
    #[cfg(not(feature = "otlp"))]
    registry.init();

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
    fn span_results_reach_the_text_log_only_when_asked_for() {
        use portcullis_tag::RESULTS_TARGET;
        use tracing::Level;
        let results =
            |rust_log| text_log_targets(rust_log).would_enable(RESULTS_TARGET, &Level::INFO);
        assert!(!results(None));
        assert!(!results(Some("info")));
        assert!(!results(Some("warn,portcullis=info")));
        assert!(results(Some("debug")));
        assert!(results(Some("info,portcullis_tag=debug")));
        assert!(results(Some("info,portcullis_tag::span_results=info")));
        // The request span itself, and the request log line, stay.
        let targets = text_log_targets(None);
        assert!(targets.would_enable(portcullis_tag::SPAN_TARGET, &Level::INFO));
        assert!(targets.would_enable("portcullis::request", &Level::INFO));
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
