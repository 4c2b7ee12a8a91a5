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
//! Logs go to stdout through a buffered writer on a thread of its own, so a request's log line
//! costs no write on the request's path: lines are batched, written when the queue drains,
//! and never dropped (a full queue makes loggers wait). Colours only when stdout is a terminal
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
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: reloading is off");
            return;
        };
        while hangups.recv().await.is_some() {
            let _ = portcullis_gateway::reload::reload_from(&gateway, &path);
        }
    });
    #[cfg(not(unix))]
    let _ = (gateway, path);
}

/// The log filter: `RUST_LOG` as `target=level` directives, else `info`.
fn log_filter() -> Targets {
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO))
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
        .with_writer(writer);
    match format {
        LogFormat::Text => layer.with_ansi(ansi).boxed(),
        LogFormat::Json => layer.json().boxed(),
    }
}

async fn run(config: Config, path: PathBuf, log_format: LogFormat) -> ExitCode {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let stdout = std::io::stdout();
    let colours = ansi(stdout.is_terminal(), std::env::var_os("NO_COLOR").is_some());
    // Kept to the end of `run`: dropping it flushes the lines still queued.
    let (writer, _log_guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("portcullis-log")
        .finish(std::io::BufWriter::with_capacity(64 * 1024, stdout));
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
    tracing::info!(
        "portcullis listening on http://{}",
        listener.local_addr().map_or(listen, |a| a)
    );
    reload_on_hangup(gateway.clone(), path.clone());
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
    if let Some(otlp) = otlp {
        if let Err(err) = otlp.shutdown().await {
            eprintln!("warning: OTLP spans were not all flushed: {err}");
        }
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
