//! The Markdown report: a section for `BENCHMARKS.md` with the machine, the exact command,
//! how the figures were taken, one table per load and notes on anything that failed.

use std::fmt::Write as _;

use crate::client::{Measured, Mode};
use crate::harness::{Options, Report, Row, Target};
use crate::payload;
use crate::stats::Summary;

/// Renders `report` as a Markdown section.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let m = &report.machine;
    let o = &report.options;
    let _ = writeln!(out, "## End-to-end load run\n");
    let _ = writeln!(out, "- Machine: {}, nproc {}, {}", m.cpu, m.nproc, m.kernel);
    let _ = writeln!(out, "- Command: {}", report.command);
    let _ = writeln!(out, "- {}", settings(o));
    let _ = writeln!(
        out,
        "- Latency: request sent to last body byte, in µs; TTFB: to the first body byte. \
         `+p50 / +p99` is what the row adds to the same percentiles of the direct row and of \
         the bare-proxy row of the same load."
    );
    let _ = writeln!(
        out,
        "- CPU µs/req: user + system time of the proxy or gateway process alone (`/proc/PID/stat`, \
         clock tick {} ms) over the measured window, per correct request. Peak RSS: its `VmHWM` \
         during the load (warm-up included).",
        1000 / crate::procfs::clock_ticks_per_second().max(1)
    );
    let _ = writeln!(
        out,
        "- Every answer is checked: status 200 and a whole body (the JSON answer, or all {} \
         SSE events ending with `[DONE]`); failures are counted in `errors`, never in the \
         figures.",
        payload::STREAM_EVENTS
    );

    let mut loads: Vec<(Mode, usize)> = Vec::new();
    for r in &report.rows {
        if !loads.contains(&(r.mode, r.concurrency)) {
            loads.push((r.mode, r.concurrency));
        }
    }
    for (mode, concurrency) in loads {
        let rows: Vec<&Row> = report
            .rows
            .iter()
            .filter(|r| r.mode == mode && r.concurrency == concurrency)
            .collect();
        let find = |t: Target| {
            rows.iter()
                .find(|r| r.target == t)
                .and_then(|r| r.result.as_ref().ok())
        };
        let (direct, bare) = (find(Target::Direct), find(Target::Bare));
        let stream = mode == Mode::Stream;
        let _ = writeln!(
            out,
            "\n### {}, concurrency {concurrency}\n",
            if stream {
                "Stream (SSE)"
            } else {
                "Non-stream (JSON)"
            }
        );
        let mut head = vec!["target", "req/s"];
        if stream {
            head.extend(["TTFB p50", "TTFB p99"]);
        }
        head.extend([
            "p50",
            "p90",
            "p99",
            "p99.9",
            "+p50 / +p99 vs direct",
            "+p50 / +p99 vs bare",
            "CPU µs/req",
            "peak RSS MiB",
            "ok",
            "errors",
        ]);
        let _ = writeln!(out, "| {} |", head.join(" | "));
        let align: Vec<&str> = head
            .iter()
            .enumerate()
            .map(|(i, _)| if i == 0 { "---" } else { "--:" })
            .collect();
        let _ = writeln!(out, "| {} |", align.join(" | "));
        for row in rows {
            let cells = match &row.result {
                Ok(m) => cells(row.target, m, direct, bare, stream),
                Err(_) => {
                    let mut c = vec!["not measured (see notes)".to_owned()];
                    c.resize(head.len() - 1, "—".to_owned());
                    c
                }
            };
            let _ = writeln!(out, "| {} | {} |", row.target.label(), cells.join(" | "));
        }
    }

    let notes = notes(report);
    if !notes.is_empty() {
        let _ = writeln!(out, "\nNotes:\n");
        for n in notes {
            let _ = writeln!(out, "- {n}");
        }
    }
    out
}

fn settings(o: &Options) -> String {
    let secs = |d: std::time::Duration| format!("{} s", trim(d.as_secs_f64()));
    let mut s = format!(
        "Each load: {} warm-up (not counted), then {} measured; HTTP/1.1 keep-alive, one \
         connection per concurrent client, one request in flight on each; all on loopback \
         against one fake upstream (a {}-byte `chat.completion` or a {}-event SSE stream, {}). \
         Gateway log: {}.",
        secs(o.warmup),
        secs(o.duration),
        payload::Answers::new().json().len(),
        payload::STREAM_EVENTS,
        if o.event_gap.is_zero() {
            "no delay".to_owned()
        } else {
            format!("{} µs between its events", o.event_gap.as_micros())
        },
        match &o.gateway_log {
            Some(filter) => format!("`RUST_LOG={filter}`"),
            None => "its default (`RUST_LOG` unset: `info`, one line per request)".to_owned(),
        }
    );
    let pins: Vec<String> = [
        ("loadgen", &o.cpus_loadgen),
        ("upstream", &o.cpus_upstream),
        ("proxy/gateway", &o.cpus_proxy),
    ]
    .iter()
    .filter_map(|(who, cpus)| cpus.as_ref().map(|c| format!("{who} on CPUs {c}")))
    .collect();
    if pins.is_empty() {
        s.push_str(" No process pinned.");
    } else {
        let _ = write!(s, " Pinned: {}.", pins.join(", "));
    }
    let threads: Vec<String> = [
        ("loadgen", o.threads),
        ("upstream", o.upstream_threads),
        ("proxy/gateway", o.proxy_threads),
    ]
    .iter()
    .filter_map(|(who, n)| n.map(|n| format!("{who} {n}")))
    .collect();
    if !threads.is_empty() {
        let _ = write!(s, " Tokio worker threads: {}.", threads.join(", "));
    }
    s
}

fn trim(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn cells(
    target: Target,
    m: &Measured,
    direct: Option<&Measured>,
    bare: Option<&Measured>,
    stream: bool,
) -> Vec<String> {
    let dash = || "—".to_owned();
    let pick =
        |s: Option<Summary>, f: fn(&Summary) -> u32| s.map_or_else(dash, |s| f(&s).to_string());
    let mut c = vec![format!("{:.0}", m.rps())];
    if stream {
        c.push(pick(m.ttfb, |s| s.p50));
        c.push(pick(m.ttfb, |s| s.p99));
    }
    c.push(pick(m.latency, |s| s.p50));
    c.push(pick(m.latency, |s| s.p90));
    c.push(pick(m.latency, |s| s.p99));
    c.push(pick(m.latency, |s| s.p999));
    let added =
        |base: Option<&Measured>, is_base: bool| match (m.latency, base.and_then(|b| b.latency)) {
            (Some(l), Some(b)) if !is_base => format!(
                "{} / {}",
                signed(i64::from(l.p50) - i64::from(b.p50)),
                signed(i64::from(l.p99) - i64::from(b.p99))
            ),
            _ => dash(),
        };
    c.push(added(direct, target == Target::Direct));
    c.push(added(bare, matches!(target, Target::Direct | Target::Bare)));
    c.push(
        m.cpu_us_per_request
            .map_or_else(dash, |x| format!("{x:.1}")),
    );
    c.push(m.peak_rss_kib.map_or_else(dash, |(k, reset)| {
        format!("{:.1}{}", k as f64 / 1024.0, if reset { "" } else { "*" })
    }));
    c.push(m.ok.to_string());
    c.push(m.errors().to_string());
    c
}

fn signed(n: i64) -> String {
    if n >= 0 {
        format!("+{n}")
    } else {
        n.to_string()
    }
}

fn notes(report: &Report) -> Vec<String> {
    let mut notes = Vec::new();
    let mut reported = Vec::new();
    let mut unreset = false;
    for row in &report.rows {
        let at = format!(
            "{} c={} {}",
            row.mode.as_str(),
            row.concurrency,
            row.target.label()
        );
        match &row.result {
            Err(reason) => {
                if !reported.contains(&row.target) {
                    reported.push(row.target);
                    let reason: Vec<&str> = reason
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .take(6)
                        .collect();
                    notes.push(format!(
                        "{} not measured: {}",
                        row.target.label(),
                        reason.join(" / ")
                    ));
                }
            }
            Ok(m) => {
                for (kind, n) in &m.failures {
                    let kind: String = kind.chars().take(200).collect();
                    notes.push(format!("{at}: {n} failed: {}", kind.replace('|', "\\|")));
                }
                if m.warmup_failures > 0 {
                    notes.push(format!(
                        "{at}: {} failed during the warm-up (not in the figures)",
                        m.warmup_failures
                    ));
                }
                if m.reconnects > 0 {
                    notes.push(format!(
                        "{at}: {} connections closed and were opened again",
                        m.reconnects
                    ));
                }
                unreset |= m.peak_rss_kib.is_some_and(|(_, reset)| !reset);
            }
        }
    }
    if unreset {
        notes.push(
            "`*` peak RSS since the process started: the kernel would not reset VmHWM \
             (/proc/PID/clear_refs)."
                .to_owned(),
        );
    }
    notes
}
