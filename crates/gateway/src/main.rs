//! `portcullis`: the gateway binary.
//!
//! ```text
//! portcullis --config FILE [--listen ADDR]   serve
//! portcullis check --config FILE             validate a config and print the resolved tree
//! ```

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
  portcullis --config FILE [--listen ADDR]   serve (default listen 127.0.0.1:8787)
  portcullis check --config FILE             validate a config and print the resolved tree";

struct Args {
    check: bool,
    config: PathBuf,
    listen: Option<String>,
}

fn args() -> Result<Args, String> {
    let mut check = false;
    let mut config = None;
    let mut listen = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "check" => check = true,
            "--config" | "-c" => config = Some(it.next().ok_or("--config needs a file")?),
            "--listen" | "-l" => listen = Some(it.next().ok_or("--listen needs an address")?),
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    let config = config.ok_or("--config FILE is required")?.into();
    Ok(Args {
        check,
        config,
        listen,
    })
}

fn main() -> ExitCode {
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
    runtime.block_on(run(config, args.config))
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
    ExitCode::SUCCESS
}

/// The log filter: `RUST_LOG` as `target=level` directives, else `info`.
fn log_filter() -> Targets {
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO))
}

async fn run(config: Config, path: PathBuf) -> ExitCode {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let registry = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_filter(log_filter()),
    );
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
