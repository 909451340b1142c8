//! The packaging, checked with real validators: the Dockerfile with hadolint, the Kubernetes
//! manifests with kubernetes-validate (strict, against the Kubernetes API's own schemas), the
//! systemd unit with `systemd-analyze verify`; and what they rely on of the binary (the health
//! check command, the probes' paths). hadolint and kubernetes-validate come from the virtualenv
//! `.ci/run` makes (`target/ci-venv`); without them the test says so and passes on a laptop, and
//! fails under CI.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use signoff_testkit::binary::Server;

const BIN: &str = env!("CARGO_BIN_EXE_signoff");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tools() -> Option<PathBuf> {
    let dir = std::env::var_os("SIGNOFF_TEST_TOOLS").map(PathBuf::from).unwrap_or_else(|| root().join("target/ci-venv/bin"));
    let have = |tool: &str| dir.join(tool).is_file();
    let systemd = Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success());
    if have("hadolint") && have("kubernetes-validate") && systemd {
        return Some(dir);
    }
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    assert!(!ci, "CI is set but {} lacks hadolint or kubernetes-validate, or systemd-analyze is missing: .ci/run installs them", dir.display());
    eprintln!("\npackaging test SKIPPED: no hadolint, kubernetes-validate or systemd-analyze (run .ci/run).\n");
    None
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn yaml(path: &Path) -> Value {
    yaml_serde::from_str(&std::fs::read_to_string(path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_image_the_manifests_and_the_unit_pass_their_validators() {
    let Some(tools) = tools() else { return };
    // The Dockerfile: hadolint finds nothing; the image runs as a non-root user and checks its
    // health with the binary itself.
    let dockerfile = root().join("Dockerfile");
    let (ok, out) = run(Command::new(tools.join("hadolint")).arg(&dockerfile));
    assert!(ok && out.trim().is_empty(), "hadolint: {out}");
    let text = std::fs::read_to_string(&dockerfile).unwrap();
    assert!(text.contains("USER 10001:10001") && text.contains("HEALTHCHECK") && text.contains("\"health\""), "non-root with a health check");

    // The manifests, strictly: unknown fields are errors. (The ServiceMonitor is a custom
    // resource the validator has no schema for: its port is checked against the Service below.)
    let dir = root().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "yaml")).collect();
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    let (ok, out) = run(Command::new(tools.join("kubernetes-validate")).arg("--strict").args(&files));
    assert!(ok, "kubernetes-validate: {out}");
    for f in ["deployment.yaml", "service.yaml", "pdb.yaml", "configmap.yaml", "secret.yaml"] {
        assert!(out.contains(&format!("{f} passed")), "{f}: {out}");
    }
    let deployment = yaml(&dir.join("deployment.yaml"));
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"], true);
    let service = yaml(&dir.join("service.yaml"));
    let monitor = yaml(&dir.join("servicemonitor.yaml"));
    assert_eq!(monitor["kind"], "ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], service["spec"]["ports"][0]["name"], "the monitor scrapes the service's port");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");

    // The unit, pointed at this build's binary.
    let units = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(root().join("deploy/systemd/signoff.service")).unwrap().replace("/usr/local/bin/signoff", BIN);
    std::fs::write(units.path().join("signoff.service"), unit).unwrap();
    let (ok, out) = run(Command::new("systemd-analyze").arg("verify").arg(units.path().join("signoff.service")));
    assert!(ok && !out.contains("Unknown") && !out.contains("Invalid"), "systemd-analyze verify: {out}");
}

#[test]
fn the_health_check_command_says_up_ready_or_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(BIN, &dir.path().join("data"));
    for (args, said) in [(&["health"][..], "status=ok"), (&["health", "--ready"], "status=ready")] {
        let out = Command::new(BIN).args(args).args(["--url", &server.url]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), said);
    }
    let url = server.url.clone();
    server.kill9();
    let out = Command::new(BIN).args(["health", "--url", &url]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "a stopped server is unreachable");
}

/// A system without CA certificates (an image without `ca-certificates`): the server still
/// starts and serves, the health check over plain HTTP still answers, and a client asked to
/// check an HTTPS server's certificate says what is missing. (The certificate store is pointed
/// at an empty file and folder, as rustls-native-certs allows.)
#[test]
fn without_ca_certificates_the_server_serves_and_the_health_check_answers() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("no-certs");
    let file = folder.join("none.pem");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(&file, "").unwrap();
    let env = [("SSL_CERT_FILE", file.to_str().unwrap()), ("SSL_CERT_DIR", folder.to_str().unwrap())];
    let server = Server::serve_with(BIN, &dir.path().join("data"), &[], std::process::Stdio::null(), &env);
    let out = Command::new(BIN).args(["health", "--url", &server.url]).envs(env).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let (code, out, err) = server.client("alice-token", &["inbox"]);
    assert_eq!(code, 0, "{out}{err}");
    let out = Command::new(BIN).args(["inbox", "--url", "https://127.0.0.1:9", "--token", "alice-token"]).envs(env).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("no CA certificates") && said.contains("--ca-cert"), "{said}");
}
