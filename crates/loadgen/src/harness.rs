//! The whole run: start the fake upstream, the bare proxy and the gateways as separate
//! processes, check that each answers, put every load on every target, stop them all.
//!
//! Loads are the outer loop and targets the inner one, so the rows a table compares were
//! taken seconds apart, under the same conditions of a shared machine.
//!
//! ```
//! use portcullis_loadgen::harness::{Options, Target};
//!
//! let opts = Options::parse(["--duration", "0.5", "--concurrency", "2", "--targets", "direct,bare"]
//!     .map(String::from))
//! .unwrap();
//! assert_eq!(opts.targets, [Target::Direct, Target::Bare]);
//! assert_eq!(opts.concurrency, [2]);
//! assert!(Options::parse(["--nope".to_owned()]).is_err());
//! ```

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::{self, Load, Measured, Mode};
use crate::procfs::Machine;

/// What is measured in a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// The fake upstream itself.
    Direct,
    /// The bare hyper proxy in front of it, reading each request body whole (as the gateway
    /// must): the floor the goal is measured against.
    Bare,
    /// The bare proxy handing the body to the upstream as it comes (`--stream-body`): what a
    /// hop that never reads the body costs.
    BareStream,
    /// The gateway with `configs/single.json`: one provider.
    Single,
    /// The gateway with `configs/all-layers.json`: every landed layer on.
    All,
    /// The gateway with `configs/cached.json`: one provider behind the cache; every request
    /// after the first is a hit (in-memory store).
    Cached,
    /// The gateway with `configs/every-layer.json`: the all-layers tree with the cache (every
    /// request a miss, in a cache namespace of its own: looked up, stored), input and output
    /// guardrails, token budgets and rate limits on every scope.
    Every,
}

impl Target {
    /// Every target, in table order.
    pub const ALL: [Target; 7] = [
        Target::Direct,
        Target::Bare,
        Target::BareStream,
        Target::Single,
        Target::All,
        Target::Cached,
        Target::Every,
    ];

    /// The name on the command line.
    pub fn flag(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Bare => "bare",
            Target::BareStream => "bare-stream",
            Target::Single => "single",
            Target::All => "all",
            Target::Cached => "cached",
            Target::Every => "every",
        }
    }

    /// The name in the table.
    pub fn label(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Bare => "bare proxy",
            Target::BareStream => "bare proxy (body streamed)",
            Target::Single => "gateway (single)",
            Target::All => "gateway (all layers)",
            Target::Cached => "gateway (cache hits)",
            Target::Every => "gateway (every layer, cache misses)",
        }
    }

    /// The gateway config of this target, if it is a gateway.
    pub fn config(self) -> Option<&'static str> {
        match self {
            Target::Single => Some("single.json"),
            Target::All => Some("all-layers.json"),
            Target::Cached => Some("cached.json"),
            Target::Every => Some("every-layer.json"),
            Target::Direct | Target::Bare | Target::BareStream => None,
        }
    }
}

/// The placeholder in the gateway configs that becomes the fake upstream's port.
pub const PORT_PLACEHOLDER: &str = "${UPSTREAM_PORT}";

/// Command-line options of `loadgen`.
#[derive(Clone, Debug)]
pub struct Options {
    /// Measured window per load (`--duration SECS`, default 5).
    pub duration: Duration,
    /// Warm-up per load, not counted (`--warmup SECS`, default 1).
    pub warmup: Duration,
    /// Connection counts (`--concurrency 1,32`).
    pub concurrency: Vec<usize>,
    /// Request kinds (`--modes json,stream`).
    pub modes: Vec<Mode>,
    /// Targets (`--targets direct,bare,bare-stream,single,all,cached,every`).
    pub targets: Vec<Target>,
    /// Also write the Markdown here (`--out FILE`).
    pub out: Option<PathBuf>,
    /// The fake upstream binary (`--upstream-bin`; default: next to `loadgen`).
    pub upstream_bin: PathBuf,
    /// The bare proxy binary (`--bare-proxy-bin`; default: next to `loadgen`).
    pub proxy_bin: PathBuf,
    /// The gateway binary (`--gateway-bin`; default: `portcullis` next to `loadgen`).
    pub gateway_bin: PathBuf,
    /// Where `single.json` and `all-layers.json` are (`--configs DIR`).
    pub configs: PathBuf,
    /// `RUST_LOG` of the gateway (`--gateway-log`); `None` (the default) runs it with its
    /// own default, `info`, one log line per request: what users run.
    pub gateway_log: Option<String>,
    /// Tokio worker threads of the fake upstream (`--upstream-threads`; default: one per CPU).
    pub upstream_threads: Option<usize>,
    /// Between the fake upstream's stream events (`--event-gap-us`; default none).
    pub event_gap: Duration,
    /// Tokio worker threads of the bare proxy and the gateway (`--proxy-threads`).
    pub proxy_threads: Option<usize>,
    /// Tokio worker threads of the load generator (`--threads`).
    pub threads: Option<usize>,
    /// CPUs of the fake upstream (`--cpus-upstream LIST`, a `taskset -c` list).
    pub cpus_upstream: Option<String>,
    /// CPUs of the bare proxy and the gateway (`--cpus-proxy LIST`).
    pub cpus_proxy: Option<String>,
    /// CPUs of the load generator (`--cpus-loadgen LIST`).
    pub cpus_loadgen: Option<String>,
    /// Logs and rendered configs (`--work-dir`; default a fresh temporary directory).
    pub work_dir: Option<PathBuf>,
}

/// The help text.
pub const USAGE: &str = "usage: loadgen [options]
  --duration SECS        measured window per load (default 5)
  --warmup SECS          warm-up per load, not counted (default 1)
  --concurrency LIST     connections, e.g. 1,32 (default 1,32)
  --modes LIST           json,stream (default both)
  --targets LIST         direct,bare,bare-stream,single,all,cached,every (default all
                         seven; bare reads each body whole, bare-stream streams it)
  --out FILE             also write the Markdown report to FILE
  --upstream-bin PATH    fake-upstream binary (default: next to loadgen)
  --bare-proxy-bin PATH  bare-proxy binary (default: next to loadgen)
  --gateway-bin PATH     portcullis binary (default: next to loadgen)
  --configs DIR          gateway configs (default: crates/loadgen/configs)
  --gateway-log FILTER   RUST_LOG of the gateway (default: unset, the gateway's own
                         default, info: a line per request, as users run it)
  --threads N            tokio workers of loadgen (default: one per CPU)
  --upstream-threads N   tokio workers of fake-upstream
  --event-gap-us N       the fake upstream waits N µs between stream events, as a
                         model's tokens come (default 0: the whole stream at once)
  --proxy-threads N      tokio workers of bare-proxy and the gateway
  --cpus-loadgen LIST    pin loadgen with taskset -c LIST (default: not pinned)
  --cpus-upstream LIST   pin fake-upstream
  --cpus-proxy LIST      pin bare-proxy and the gateway
  --work-dir DIR         logs and rendered configs (default: a temporary directory)";

impl Options {
    /// Reads options from the arguments after the program name.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let here = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        let mut o = Options {
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            concurrency: vec![1, 32],
            modes: vec![Mode::Json, Mode::Stream],
            targets: Target::ALL.to_vec(),
            out: None,
            upstream_bin: here.join("fake-upstream"),
            proxy_bin: here.join("bare-proxy"),
            gateway_bin: here.join("portcullis"),
            configs: Path::new(env!("CARGO_MANIFEST_DIR")).join("configs"),
            gateway_log: None,
            upstream_threads: None,
            event_gap: Duration::ZERO,
            proxy_threads: None,
            threads: None,
            cpus_upstream: None,
            cpus_proxy: None,
            cpus_loadgen: None,
            work_dir: None,
        };
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            if flag == "--help" || flag == "-h" {
                return Err(String::new());
            }
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let bad = |what: &str| format!("{flag}: `{value}` is not {what}");
            match flag.as_str() {
                "--duration" => {
                    o.duration = seconds(&value).ok_or_else(|| bad("a duration in seconds > 0"))?
                }
                "--warmup" => {
                    o.warmup = value
                        .parse::<f64>()
                        .ok()
                        .filter(|s| s.is_finite() && *s >= 0.0)
                        .map(Duration::from_secs_f64)
                        .ok_or_else(|| bad("a duration in seconds"))?;
                }
                "--concurrency" => {
                    o.concurrency = list(&value, |s| s.parse().ok().filter(|&n: &usize| n > 0))
                        .ok_or_else(|| bad("a list of counts > 0"))?;
                }
                "--modes" => {
                    o.modes = list(&value, |s| match s {
                        "json" => Some(Mode::Json),
                        "stream" => Some(Mode::Stream),
                        _ => None,
                    })
                    .ok_or_else(|| bad("a list of json, stream"))?;
                }
                "--targets" => {
                    let mut t = list(&value, |s| Target::ALL.into_iter().find(|t| t.flag() == s))
                        .ok_or_else(|| {
                        bad("a list of direct, bare, bare-stream, single, all, cached, every")
                    })?;
                    t.sort();
                    t.dedup();
                    o.targets = t;
                }
                "--out" => o.out = Some(value.into()),
                "--upstream-bin" => o.upstream_bin = value.into(),
                "--bare-proxy-bin" => o.proxy_bin = value.into(),
                "--gateway-bin" => o.gateway_bin = value.into(),
                "--configs" => o.configs = value.into(),
                "--gateway-log" => o.gateway_log = Some(value),
                "--threads" => o.threads = Some(count(&value).ok_or_else(|| bad("a count > 0"))?),
                "--upstream-threads" => {
                    o.upstream_threads = Some(count(&value).ok_or_else(|| bad("a count > 0"))?);
                }
                "--event-gap-us" => {
                    let us: u64 = value.parse().map_err(|_| bad("microseconds"))?;
                    o.event_gap = Duration::from_micros(us);
                }
                "--proxy-threads" => {
                    o.proxy_threads = Some(count(&value).ok_or_else(|| bad("a count > 0"))?);
                }
                "--cpus-upstream" => o.cpus_upstream = Some(value),
                "--cpus-proxy" => o.cpus_proxy = Some(value),
                "--cpus-loadgen" => o.cpus_loadgen = Some(value),
                "--work-dir" => o.work_dir = Some(value.into()),
                _ => return Err(format!("unknown option `{flag}`")),
            }
        }
        Ok(o)
    }

    fn pinned(&self) -> bool {
        self.cpus_upstream.is_some() || self.cpus_proxy.is_some() || self.cpus_loadgen.is_some()
    }
}

fn seconds(s: &str) -> Option<Duration> {
    s.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
}

fn count(s: &str) -> Option<usize> {
    s.parse().ok().filter(|&n| n > 0)
}

fn list<T>(s: &str, item: impl Fn(&str) -> Option<T>) -> Option<Vec<T>> {
    let items: Option<Vec<T>> = s.split(',').map(|p| item(p.trim())).collect();
    items.filter(|v| !v.is_empty())
}

/// One row of the report.
#[derive(Clone, Debug)]
pub struct Row {
    /// Request kind.
    pub mode: Mode,
    /// Connections.
    pub concurrency: usize,
    /// What was measured.
    pub target: Target,
    /// The figures, or why the target could not be measured.
    pub result: Result<Measured, String>,
}

/// Everything a run found, ready to render.
#[derive(Clone, Debug)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// The command that produced it, as Markdown (code spans).
    pub command: String,
    /// The options it ran with.
    pub options: Options,
    /// Rows, grouped by load (mode, concurrency) in target order.
    pub rows: Vec<Row>,
}

impl Report {
    /// `true` when every target started and no measured request failed.
    pub fn clean(&self) -> bool {
        self.rows
            .iter()
            .all(|r| r.result.as_ref().is_ok_and(|m| m.errors() == 0))
    }
}

/// Pins this process (all its threads) to `cpus` with `taskset`. Call it before starting a
/// runtime, so every thread inherits the mask. Returns the CPU list it had before, which
/// children that are not pinned themselves get back.
pub fn pin_self(cpus: &str) -> Result<String, String> {
    let pid = std::process::id().to_string();
    let before = Command::new("taskset")
        .args(["-c", "-p", &pid])
        .output()
        .map_err(|e| format!("taskset: {e}"))?;
    let before = String::from_utf8_lossy(&before.stdout);
    let before = before
        .rsplit_once(':')
        .map(|(_, l)| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .ok_or_else(|| format!("taskset printed no CPU list: {before}"))?;
    let status = Command::new("taskset")
        .args(["-a", "-c", "-p", cpus, &pid])
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("taskset: {e}"))?;
    if !status.success() {
        return Err(format!("taskset -c {cpus} failed"));
    }
    Ok(before)
}

/// Runs every load on every target. `machine` is read before any pinning (so `nproc` is the
/// machine's); `unpinned_cpus` is the CPU list children get when the load generator pinned
/// itself (see [`pin_self`]) and they are not pinned.
pub async fn run(
    options: Options,
    command: String,
    machine: Machine,
    unpinned_cpus: Option<String>,
) -> Result<Report, String> {
    let mut work = match &options.work_dir {
        Some(d) => WorkDir::keep(d.clone()),
        None => WorkDir::temporary(
            std::env::temp_dir().join(format!("portcullis-loadgen-{}", std::process::id())),
        ),
    };
    std::fs::create_dir_all(&work.path).map_err(|e| format!("{}: {e}", work.path.display()))?;
    let cpus = |own: &Option<String>| own.clone().or_else(|| unpinned_cpus.clone());
    if options.pinned() && which("taskset").is_none() {
        return Err("--cpus-* needs taskset (util-linux)".to_owned());
    }

    let upstream_addr = free_addr()?;
    let mut upstream = Spawn::new("fake-upstream", &options.upstream_bin, upstream_addr);
    upstream
        .args([
            "--listen",
            &upstream_addr.to_string(),
            "--exit-on-stdin-eof",
        ])
        .threads(options.upstream_threads)
        .cpus(cpus(&options.cpus_upstream));
    if !options.event_gap.is_zero() {
        upstream.args(["--event-gap-us", &options.event_gap.as_micros().to_string()]);
    }
    let upstream = upstream.start(&work.path)?;
    // `Ok(None)`: the upstream itself (direct); `Err`: why the target cannot be measured.
    let mut servers: Vec<(Target, Result<Option<Proc>, String>)> = Vec::new();
    for &target in &options.targets {
        let started = match target {
            Target::Direct => Ok(None),
            Target::Bare | Target::BareStream => {
                let addr = free_addr()?;
                let mut s = Spawn::new("bare-proxy", &options.proxy_bin, addr);
                s.args([
                    "--listen",
                    &addr.to_string(),
                    "--upstream",
                    &upstream_addr.to_string(),
                    "--exit-on-stdin-eof",
                ]);
                if target == Target::BareStream {
                    s.args(["--stream-body"]);
                }
                s.threads(options.proxy_threads)
                    .cpus(cpus(&options.cpus_proxy));
                s.start(&work.path).map(Some)
            }
            Target::Single | Target::All | Target::Cached | Target::Every => {
                let name = target.config().expect("a gateway target has a config");
                let addr = free_addr()?;
                render_config(
                    &options.configs.join(name),
                    &work.path.join(name),
                    upstream_addr.port(),
                )
                .and_then(|config| {
                    let mut s = Spawn::new(
                        match target {
                            Target::Single => "portcullis-single",
                            Target::Cached => "portcullis-cached",
                            Target::Every => "portcullis-every",
                            _ => "portcullis-all",
                        },
                        &options.gateway_bin,
                        addr,
                    );
                    s.args([
                        "--config",
                        &config.to_string_lossy(),
                        "--listen",
                        &addr.to_string(),
                    ])
                    .log(options.gateway_log.as_deref())
                    .threads(options.proxy_threads)
                    .cpus(cpus(&options.cpus_proxy))
                    .stdin_watch(false);
                    s.start(&work.path).map(Some)
                })
            }
        };
        let checked = match started {
            Ok(proc) => {
                let addr = proc.as_ref().map_or(upstream.addr, |p| p.addr);
                match probe_all(addr, &options.modes).await {
                    Ok(()) => Ok(proc),
                    Err(e) => Err(format!("does not answer correctly: {e}")),
                }
            }
            Err(e) => Err(e),
        };
        if let Err(e) = &checked {
            eprintln!("loadgen: {}: {e}", target.label());
        }
        servers.push((target, checked));
    }

    let loads: Vec<Load> = options
        .modes
        .iter()
        .flat_map(|&mode| {
            options.concurrency.iter().map(move |&concurrency| Load {
                mode,
                concurrency,
                warmup: options.warmup,
                duration: options.duration,
                vary_namespace: false,
            })
        })
        .collect();
    let total = loads.len() * servers.len();
    let mut rows = Vec::with_capacity(total);
    for load in &loads {
        for (target, server) in &servers {
            let result = match server {
                Ok(None) => Ok(client::run(upstream.addr, load, None).await),
                Ok(Some(proc)) => {
                    let load = Load {
                        vary_namespace: *target == Target::Every,
                        ..load.clone()
                    };
                    Ok(client::run(proc.addr, &load, Some(proc.pid)).await)
                }
                Err(e) => Err(e.clone()),
            };
            if let Ok(m) = &result {
                eprintln!(
                    "[{}/{total}] {} c={} {}: {:.0} req/s, p50 {} µs, {} errors",
                    rows.len() + 1,
                    load.mode.as_str(),
                    load.concurrency,
                    target.label(),
                    m.rps(),
                    m.latency.map_or(0, |l| l.p50),
                    m.errors(),
                );
            }
            rows.push(Row {
                mode: load.mode,
                concurrency: load.concurrency,
                target: *target,
                result,
            });
        }
    }
    // Every load is done: stop the servers before rendering.
    if servers.iter().any(|(_, s)| s.is_err()) && work.remove {
        work.remove = false;
        eprintln!(
            "loadgen: logs and rendered configs kept in {}",
            work.path.display()
        );
    }
    drop(servers);
    drop(upstream);
    Ok(Report {
        machine,
        command,
        options,
        rows,
    })
}

/// Logs and rendered configs; a temporary one is removed when the run ends, however it ends.
pub(crate) struct WorkDir {
    pub(crate) path: PathBuf,
    pub(crate) remove: bool,
}

impl WorkDir {
    pub(crate) fn keep(path: PathBuf) -> Self {
        Self {
            path,
            remove: false,
        }
    }

    pub(crate) fn temporary(path: PathBuf) -> Self {
        Self { path, remove: true }
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

async fn probe_all(addr: SocketAddr, modes: &[Mode]) -> Result<(), String> {
    for &mode in modes {
        client::probe(addr, mode)
            .await
            .map_err(|e| format!("{} request: {e}", mode.as_str()))?;
    }
    Ok(())
}

/// Writes `template` to `to` with [`PORT_PLACEHOLDER`] replaced by `port`.
pub fn render_config(template: &Path, to: &Path, port: u16) -> Result<PathBuf, String> {
    let text = std::fs::read_to_string(template)
        .map_err(|e| format!("cannot read {}: {e}", template.display()))?;
    if !text.contains(PORT_PLACEHOLDER) {
        return Err(format!(
            "{} never mentions {PORT_PLACEHOLDER}: it would not reach the fake upstream",
            template.display()
        ));
    }
    std::fs::write(to, text.replace(PORT_PLACEHOLDER, &port.to_string()))
        .map_err(|e| format!("cannot write {}: {e}", to.display()))?;
    Ok(to.to_path_buf())
}

/// A loopback address with a port that was free a moment ago.
pub(crate) fn free_addr() -> Result<SocketAddr, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// How to start one server process.
pub(crate) struct Spawn {
    name: &'static str,
    bin: PathBuf,
    addr: SocketAddr,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Variables removed from the inherited environment.
    unset: Vec<&'static str>,
    cpus: Option<String>,
    stdin_watch: bool,
}

impl Spawn {
    pub(crate) fn new(name: &'static str, bin: &Path, addr: SocketAddr) -> Self {
        Self {
            name,
            bin: bin.to_path_buf(),
            addr,
            args: Vec::new(),
            env: Vec::new(),
            unset: Vec::new(),
            cpus: None,
            stdin_watch: true,
        }
    }

    pub(crate) fn args<'a>(&mut self, args: impl IntoIterator<Item = &'a str>) -> &mut Self {
        self.args.extend(args.into_iter().map(str::to_owned));
        self
    }

    pub(crate) fn env(&mut self, key: &str, value: &str) -> &mut Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// `RUST_LOG` set to `filter`, or, for `None`, removed: the program's own default.
    pub(crate) fn log(&mut self, filter: Option<&str>) -> &mut Self {
        match filter {
            Some(filter) => self.env("RUST_LOG", filter),
            None => {
                self.unset.push("RUST_LOG");
                self
            }
        }
    }

    pub(crate) fn threads(&mut self, n: Option<usize>) -> &mut Self {
        // Tokio's default runtime reads this, in our binaries and in the gateway alike.
        if let Some(n) = n {
            self.env("TOKIO_WORKER_THREADS", &n.to_string());
        }
        self
    }

    pub(crate) fn cpus(&mut self, cpus: Option<String>) -> &mut Self {
        self.cpus = cpus;
        self
    }

    /// Our own servers exit when their stdin closes, so they die with the load generator
    /// however it ends; the gateway does not know the flag.
    pub(crate) fn stdin_watch(&mut self, on: bool) -> &mut Self {
        self.stdin_watch = on;
        self
    }

    /// Starts the process and waits until it accepts connections.
    pub(crate) fn start(&self, work: &Path) -> Result<Proc, String> {
        if !self.bin.is_file() {
            return Err(format!(
                "{}: no binary at {} (build it: cargo build --release -p portcullis-gateway -p portcullis-loadgen)",
                self.name,
                self.bin.display()
            ));
        }
        let log = work.join(format!("{}.log", self.name));
        let out = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let mut cmd = match &self.cpus {
            Some(cpus) => {
                // taskset execs the program: the pid stays the server's.
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpus).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        for key in &self.unset {
            cmd.env_remove(key);
        }
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if self.stdin_watch {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(out)
            .stderr(err);
        let child = cmd
            .spawn()
            .map_err(|e| format!("{}: cannot start {}: {e}", self.name, self.bin.display()))?;
        let mut proc = Proc {
            pid: child.id(),
            child,
            addr: self.addr,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = proc.child.try_wait() {
                return Err(format!(
                    "{} exited at start-up ({status}):\n{}",
                    self.name,
                    tail(&log)
                ));
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(proc);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not accept on {} within 30 s:\n{}",
                    self.name,
                    self.addr,
                    tail(&log)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A running server; killed when dropped.
#[derive(Debug)]
pub(crate) struct Proc {
    child: Child,
    pub(crate) pid: u32,
    pub(crate) addr: SocketAddr,
}

impl Proc {
    /// Whether the process is still running.
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_issue_s_matrix() {
        let o = Options::parse(Vec::new()).unwrap();
        assert_eq!(o.duration, Duration::from_secs(5));
        assert_eq!(o.warmup, Duration::from_secs(1));
        assert_eq!(o.concurrency, [1, 32]);
        assert_eq!(o.modes, [Mode::Json, Mode::Stream]);
        assert_eq!(o.targets, Target::ALL);
        assert!(o.configs.join("single.json").is_file());
        assert!(o.configs.join("all-layers.json").is_file());
    }

    #[test]
    fn bad_options_are_refused() {
        for args in [
            &["--duration", "0"][..],
            &["--duration", "x"],
            &["--concurrency", "1,0"],
            &["--modes", "sse"],
            &["--targets", ""],
            &["--warmup"],
        ] {
            assert!(
                Options::parse(args.iter().map(|s| s.to_string())).is_err(),
                "{args:?}"
            );
        }
        let o = Options::parse(
            [
                "--targets",
                "all,direct,all",
                "--warmup",
                "0",
                "--modes",
                "stream",
            ]
            .map(String::from),
        )
        .unwrap();
        assert_eq!(o.targets, [Target::Direct, Target::All]);
        assert_eq!(o.warmup, Duration::ZERO);
        assert_eq!(o.modes, [Mode::Stream]);
    }

    #[test]
    fn configs_are_rendered_with_the_port() {
        let dir = std::env::temp_dir().join(format!("loadgen-render-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        for name in ["single.json", "all-layers.json"] {
            let out = render_config(&configs.join(name), &dir.join(name), 4321).unwrap();
            let text = std::fs::read_to_string(out).unwrap();
            assert!(!text.contains(PORT_PLACEHOLDER));
            assert!(text.contains("http://127.0.0.1:4321/v1"));
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(v["providers"].is_object());
        }
        std::fs::write(dir.join("fixed.json"), "{}").unwrap();
        assert!(render_config(&dir.join("fixed.json"), &dir.join("out.json"), 1).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
