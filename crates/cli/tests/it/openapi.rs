//! The OpenAPI document against real tools, through the real binary: openapi-spec-validator
//! checks both documents (public and signed-in), and a bounded, deterministic schemathesis pass
//! runs every check against the running server, which must answer every generated call as the
//! document says. The tools come from the Python virtualenv `.ci/run` makes
//! (`target/ci-venv`, or `SIGNOFF_TEST_TOOLS=<its bin directory>`); without them the test says
//! so and passes on a laptop, and fails under CI.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_signoff");

fn tools() -> Option<PathBuf> {
    let dir = std::env::var_os("SIGNOFF_TEST_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/ci-venv/bin"));
    if dir.join("st").is_file() && dir.join("openapi-spec-validator").is_file() {
        return Some(dir);
    }
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    assert!(!ci, "CI is set but {} lacks schemathesis (st) and openapi-spec-validator: .ci/run installs them", dir.display());
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\nOpenAPI tool test SKIPPED: no schemathesis in {} (run .ci/run, or set SIGNOFF_TEST_TOOLS).\n", dir.display());
    None
}

#[test]
fn the_document_validates_and_the_server_answers_as_it_says() {
    let Some(tools) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut child = Stopped(Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        // The fuzzer sends thousands of calls, many with bad tokens: limits would turn the
        // rest into 429s (declared, but then nothing else is checked).
        .args(["--rate-limits", "false"])
        .env_remove("SIGNOFF_LISTEN")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines.next().unwrap().unwrap().trim_start_matches("listening on ").to_string();
    std::thread::spawn(move || for _ in lines {});
    signoff_server::install_tls();
    let http = reqwest::blocking::Client::new();
    let public = dir.path().join("public.json");
    let full = dir.path().join("full.json");
    std::fs::write(&public, http.get(format!("{url}/openapi.json")).send().unwrap().text().unwrap()).unwrap();
    std::fs::write(&full, http.get(format!("{url}/v1/openapi.json")).bearer_auth("alice-token").send().unwrap().text().unwrap()).unwrap();

    let out = Command::new(tools.join("openapi-spec-validator")).arg(&public).arg(&full).output().unwrap();
    assert!(out.status.success(), "openapi-spec-validator: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    // Long-lived by design (event streams, a long poll): covered by the live tests instead.
    // PYTHONHASHSEED fixes the tool's own iteration order, so a run is repeatable. On this
    // machine's Python (3.11.7) the tool itself now and then crashes while generating a case
    // (CPython's "AST constructor recursion depth mismatch", fixed in later Pythons), or
    // Hypothesis trips over its own cache while describing a generator (a `KeyError` in
    // `hypothesis/internal/lambda_sources.py`, reported as "Inconsistent results"); a run that
    // reports only such a crash, and no failure of a check, is made again, at most twice more.
    let schemathesis = || {
        Command::new(tools.join("st"))
            .arg("--config-file")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/schemathesis.toml"))
            .arg("run")
            .arg(&full)
            .args(["--url", &url, "-H", "Authorization: Bearer alice-token", "--max-examples", "20", "--generation-deterministic"])
            .args(["--phases", "examples,coverage,fuzzing", "--request-timeout", "15", "--workers", "2", "--no-color"])
            .args(["--exclude-path", "/v1/stream", "--exclude-path-regex", "/(wait|stream)$", "--continue-on-failure"])
            .env("PYTHONHASHSEED", "0")
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let mut out = schemathesis();
    for _ in 0..2 {
        let report = String::from_utf8_lossy(&out.stdout);
        let own_crash = report.contains("AST constructor recursion depth mismatch") || report.contains("hypothesis/internal/lambda_sources.py");
        let crashed_alone = own_crash && !report.contains("Failures:") && !report.contains("Network Error");
        if out.status.success() || !crashed_alone {
            break;
        }
        eprintln!("schemathesis crashed on its own (not a check failure); running it again");
        out = schemathesis();
    }
    let report = String::from_utf8_lossy(&out.stdout);
    drop(child);
    assert!(out.status.success(), "schemathesis found failures:\n{report}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.contains(" generated, ") && report.contains(" passed"), "{report}");
}

/// The server, stopped when the test ends, whether it passes or not.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Stopped {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Stopped {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}
