//! The whole harness, briefly: `loadgen` starts the real binaries, puts a short load of each
//! kind on each target and writes its report; the report must have a row per target and
//! load, with answers and no errors. Nothing here looks at a latency figure.
//!
//! The gateway comes from another crate, so cargo does not build it for these tests: its
//! rows run when `target/{debug,release}/portcullis` exists (the newer is used), and the
//! all-layers and every-layer rows only when that binary accepts their configs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use portcullis_loadgen::harness::render_config;

fn bin_dir() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_loadgen")).parent().unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadgen-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The newest `portcullis` binary in the target directory, if any.
fn gateway() -> Option<PathBuf> {
    let profile = bin_dir();
    let candidates = [
        profile.join("portcullis"),
        profile.parent()?.join("release").join("portcullis"),
        profile.parent()?.join("debug").join("portcullis"),
    ];
    candidates
        .into_iter()
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
}

/// Runs `loadgen` with its logs and rendered configs under `dir`.
fn loadgen(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .arg("--work-dir")
        .arg(dir.join("work"))
        .args(["--upstream-bin", env!("CARGO_BIN_EXE_fake-upstream")])
        .args(["--bare-proxy-bin", env!("CARGO_BIN_EXE_bare-proxy")])
        .output()
        .unwrap()
}

/// Table rows as (target, cells).
fn rows(report: &str) -> Vec<(String, Vec<String>)> {
    report
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| target") && !l.starts_with("| ---"))
        .map(|l| {
            let cells: Vec<String> = l
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect();
            (cells[0].clone(), cells[1..].to_vec())
        })
        .collect()
}

#[test]
fn a_short_run_measures_every_target_without_errors() {
    let dir = scratch("run");
    let mut targets = vec!["direct", "bare", "bare-stream"];
    let mut labels = vec!["direct", "bare proxy", "bare proxy (body streamed)"];
    let gw = gateway();
    match &gw {
        None => eprintln!(
            "NOTE: no target/debug/portcullis or target/release/portcullis: the gateway rows are \
             skipped (cargo build -p portcullis-gateway to include them)"
        ),
        Some(gw) => {
            eprintln!("gateway binary: {}", gw.display());
            targets.push("single");
            labels.push("gateway (single)");
            let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
            for (file, flag, label) in [
                ("all-layers.json", "all", "gateway (all layers)"),
                (
                    "every-layer.json",
                    "every",
                    "gateway (every layer, cache misses)",
                ),
            ] {
                let config = render_config(&configs.join(file), &dir.join(file), 9).unwrap();
                let check = Command::new(gw)
                    .args(["check", "--config"])
                    .arg(&config)
                    .output()
                    .unwrap();
                if check.status.success() {
                    targets.push(flag);
                    labels.push(label);
                } else {
                    eprintln!(
                        "NOTE: this gateway binary refuses configs/{file}, so its rows are \
                         skipped: {}",
                        String::from_utf8_lossy(&check.stderr).trim()
                    );
                }
            }
        }
    }
    let out = dir.join("e2e.md");
    let targets = targets.join(",");
    let mut args = vec![
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
        "--concurrency",
        "2",
        "--targets",
        &targets,
        "--out",
        out.to_str().unwrap(),
    ];
    let gw_arg;
    if let Some(gw) = &gw {
        gw_arg = gw.to_string_lossy().into_owned();
        args.extend(["--gateway-bin", &gw_arg]);
    }
    let run = loadgen(&dir, &args);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "loadgen failed:\n{stderr}\n{stdout}");
    let report = std::fs::read_to_string(&out).unwrap();
    assert_eq!(report, stdout, "--out holds what was printed");
    assert!(report.contains("- Machine: "));
    assert!(report.contains("- Command: `"));

    let rows = rows(&report);
    // Two loads (JSON and stream at concurrency 2), a row per target in each.
    assert_eq!(rows.len(), 2 * labels.len(), "{report}");
    for (i, (target, cells)) in rows.iter().enumerate() {
        assert_eq!(target, labels[i % labels.len()], "{report}");
        let ok: u64 = cells[cells.len() - 2].parse().unwrap();
        let errors: u64 = cells[cells.len() - 1].parse().unwrap();
        assert!(ok > 0, "{target}: no answers\n{report}");
        assert_eq!(errors, 0, "{target}: errors\n{report}");
    }
    assert!(!report.contains("Notes:"), "{report}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_target_that_cannot_start_is_reported_not_skipped() {
    let dir = scratch("missing");
    let out = dir.join("e2e.md");
    let run = loadgen(
        &dir,
        &[
            "--duration",
            "0.1",
            "--warmup",
            "0",
            "--concurrency",
            "1",
            "--modes",
            "json",
            "--targets",
            "direct,single",
            "--gateway-bin",
            dir.join("no-such-gateway").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(run.status.code(), Some(1));
    let report = std::fs::read_to_string(&out).unwrap();
    let rows = rows(&report);
    assert_eq!(rows.len(), 2, "{report}");
    assert_eq!(rows[1].0, "gateway (single)");
    assert_eq!(rows[1].1[0], "not measured (see notes)");
    assert!(
        report.contains("gateway (single) not measured: "),
        "{report}"
    );
    assert!(report.contains("no binary at"), "{report}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_short_soak_samples_the_gateway_and_checks_every_stream() {
    let Some(gw) = gateway() else {
        eprintln!("NOTE: no portcullis binary in the target directory: the soak test is skipped");
        return;
    };
    let dir = scratch("soak");
    let out = dir.join("soak.md");
    let run = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "soak",
            "--duration",
            "3",
            "--sample",
            "0.5",
            "--concurrency",
            "4",
        ])
        .arg("--gateway-bin")
        .arg(&gw)
        .args(["--upstream-bin", env!("CARGO_BIN_EXE_fake-upstream")])
        .arg("--work-dir")
        .arg(dir.join("work"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    if stderr.contains("exited at start-up") {
        eprintln!(
            "NOTE: this gateway binary refuses configs/soak.json, so the soak test is skipped:\n{stderr}"
        );
        return;
    }
    let report = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{e}\n{stderr}"));
    assert_eq!(report, stdout, "--out holds what was printed");
    // Three seconds are too short for a verdict on memory to mean anything; what must hold is
    // that the soak ran, sampled, and saw no stream cut without an error event.
    assert!(report.contains("- Verdict: **"), "{report}");
    assert!(report.contains("ok_json"), "{report}");
    assert!(!report.contains("truncated"), "{report}");
    assert!(!report.contains("stream_body_broken"), "{report}");
    assert!(report.contains("Gateway still running"), "{report}");
    let samples = report
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| t (s)"))
        .count();
    assert!(samples >= 5, "{report}");
    std::fs::remove_dir_all(&dir).unwrap();
}
