//! What production adds, through the real binary: rate limits set in the configuration file
//! (429 with `Retry-After`, the metric, failed authentication logged with the client's
//! address), and start-up refusing a bad limit by name.

use std::process::{Command, Stdio};

use serde_json::{Value, json};
use signoff_testkit::binary::Server;

const BIN: &str = env!("CARGO_BIN_EXE_signoff");

#[test]
fn rate_limits_from_the_config_file_answer_429_count_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("signoff.toml");
    std::fs::write(&config, "[rate_limits]\nsubmissions = { caller = \"2/min\" }\nfailed_auth = \"2/min\"\n").unwrap();
    let log = dir.path().join("stderr.log");
    let stderr = std::fs::File::create(&log).unwrap();
    let server = Server::serve(BIN, &dir.path().join("data"), &["--config".as_ref(), config.as_os_str()], Stdio::from(stderr));
    signoff_server::install_tls();
    let http = reqwest::blocking::Client::new();
    let submit = |token: &str| {
        http.post(format!("{}/v1/requests", server.url))
            .bearer_auth(token)
            .json(&json!({"policy": "quote-discount", "context": {"quote": {"total": 48000, "discount": 0.18, "margin": 0.21, "nonstandard_clause": false}}}))
            .send()
            .unwrap()
    };
    for _ in 0..2 {
        let resp = submit("alice-token");
        assert_eq!(resp.status().as_u16(), 201, "{}", resp.text().unwrap());
    }
    let limited = submit("alice-token");
    assert_eq!(limited.status().as_u16(), 429);
    let retry: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "a token every 30 s: {retry}");
    let body: Value = limited.json().unwrap();
    assert_eq!(body["code"], "rate_limited");

    for guess in ["guess-1", "guess-2"] {
        assert_eq!(submit(guess).status().as_u16(), 401);
    }
    assert_eq!(submit("guess-3").status().as_u16(), 429, "the third failure in the minute");
    let scrape = http.get(format!("{}/metrics", server.url)).send().unwrap().text().unwrap();
    let count = |class: &str, by: &str| {
        scrape
            .lines()
            .find(|l| l.starts_with("signoff_rate_limited_total{") && l.contains(&format!("class=\"{class}\"")) && l.contains(&format!("by=\"{by}\"")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert_eq!(count("submissions", "caller"), Some(1.0), "{scrape}");
    assert_eq!(count("failed_auth", "address"), Some(1.0));
    assert_eq!(count("reads", "address"), Some(0.0), "every family is there from the start");
    drop(server);
    let log = std::fs::read_to_string(&log).unwrap();
    let failures: Vec<&str> = log.lines().filter(|l| l.contains("failed authentication")).collect();
    assert_eq!(failures.len(), 3, "{log}");
    assert!(failures.iter().all(|l| l.contains("address=127.0.0.1")), "{failures:?}");
}

#[test]
fn https_with_client_certificates_and_a_certificate_reloaded_on_sighup() {
    use signoff_testkit::certs::Authority;
    let dir = tempfile::tempdir().unwrap();
    let (servers, renewed, clients) = (Authority::new("server CA"), Authority::new("renewed CA"), Authority::new("client CA"));
    let (cert, key) = servers.server().write(dir.path(), "server");
    let client_ca = clients.write(dir.path(), "clients");
    let (client_cert, client_key) = clients.client("ops").write(dir.path(), "ops");
    let (servers_pem, renewed_pem) = (servers.write(dir.path(), "servers-ca"), renewed.write(dir.path(), "renewed-ca"));
    let args = ["--tls-cert".as_ref(), cert.as_os_str(), "--tls-key".as_ref(), key.as_os_str(), "--client-ca".as_ref(), client_ca.as_os_str()];
    let server = Server::serve(BIN, &dir.path().join("data"), &args, Stdio::null());
    assert!(server.url.starts_with("https://127.0.0.1:"), "{}", server.url);

    // The CLI, trusting the server's authority and presenting its certificate.
    let cli = |ca: &std::path::Path, with_cert: bool, args: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(args).env("SIGNOFF_URL", &server.url).env("SIGNOFF_TOKEN", "mark-token").env("SIGNOFF_CA_CERT", ca);
        if with_cert {
            c.env("SIGNOFF_CLIENT_CERT", &client_cert).env("SIGNOFF_CLIENT_KEY", &client_key);
        }
        let out = c.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string())
    };
    let (code, said) = cli(&servers_pem, true, &["health", "--ready"]);
    assert_eq!((code, said.trim()), (Some(0), "status=ready"));
    assert_eq!(cli(&servers_pem, true, &["inbox"]).0, Some(0));
    assert_eq!(cli(&servers_pem, false, &["health"]).0, Some(3), "no client certificate: no connection");

    // A connection kept open across the reload.
    signoff_server::install_tls();
    let identity = reqwest::Identity::from_pem(format!("{}\n{}", std::fs::read_to_string(&client_cert).unwrap(), std::fs::read_to_string(&client_key).unwrap()).as_bytes()).unwrap();
    let trusting = |ca: &Authority| {
        reqwest::blocking::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap()])
            .identity(identity.clone())
            .build()
            .unwrap()
    };
    let kept = trusting(&servers);
    let healthz = format!("{}/healthz", server.url);
    assert!(kept.get(&healthz).send().unwrap().status().is_success());
    renewed.server().write(dir.path(), "server");
    let hup = Command::new("kill").args(["-HUP", &server.child.id().to_string()]).status().unwrap();
    assert!(hup.success());
    signoff_testkit::poll::until("the renewed certificate", std::time::Duration::from_secs(10), || trusting(&renewed).get(&healthz).send().ok());
    assert!(kept.get(&healthz).send().unwrap().status().is_success(), "the connection opened before the reload still answers");
    assert_eq!(cli(&renewed_pem, true, &["inbox"]).0, Some(0));
    assert_eq!(cli(&servers_pem, true, &["health"]).0, Some(3), "new connections no longer get the old certificate");
}

#[test]
fn people_and_tokens_by_api_and_single_sign_on_through_the_binary() {
    use signoff_testkit::peers::oidc::{CLIENT_ID, start_issuer};
    // The issuer runs on a runtime of its own for the whole test.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let issuer = runtime.block_on(start_issuer());
    let dir = tempfile::tempdir().unwrap();
    let directory = dir.path().join("directory.yaml");
    std::fs::write(&directory, "users: [{id: root}, {id: ann, name: Ann}]\nadmins: [root]\ntokens:\n  - {user: root, sha256: ".to_string() + &signoff_engine::directory::token_hash("root-secret") + "}\n").unwrap();
    let config = dir.path().join("signoff.toml");
    std::fs::write(&config, format!("[oidc]\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\n", issuer.url)).unwrap();
    let args = ["--directory".as_ref(), directory.as_os_str(), "--config".as_ref(), config.as_os_str()];
    let data = dir.path().join("data");
    signoff_server::install_tls();
    let http = reqwest::blocking::Client::new();
    let issued = {
        let server = Server::serve(BIN, &data, &args, Stdio::null());
        let resp = http
            .put(format!("{}/v1/admin/users/bo", server.url))
            .bearer_auth("root-secret")
            .json(&json!({"name": "Bo", "manager": "ann"}))
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().unwrap());
        let resp = http.post(format!("{}/v1/admin/tokens", server.url)).bearer_auth("root-secret").json(&json!({"user": "bo", "name": "agent"})).send().unwrap();
        assert_eq!(resp.status().as_u16(), 201);
        let issued: Value = resp.json().unwrap();
        // A bearer JWT from the issuer names a directory user.
        let now = jiff::Timestamp::now().as_second();
        let jwt = issuer.sign(&issuer.claims("ann", now));
        let me: Value = http.get(format!("{}/v1/me", server.url)).bearer_auth(&jwt).send().unwrap().json().unwrap();
        assert_eq!(me["id"], "ann");
        issued
    };
    // Restarted on the same data, the API's changes are still there.
    let server = Server::serve(BIN, &data, &args, Stdio::null());
    let token = issued["token"].as_str().unwrap();
    let me: Value = http.get(format!("{}/v1/me", server.url)).bearer_auth(token).send().unwrap().json().unwrap();
    assert_eq!((me["id"].as_str(), me["manager"].as_str()), (Some("bo"), Some("ann")));
    let changes: Value = http.get(format!("{}/v1/admin/directory/changes", server.url)).bearer_auth("root-secret").send().unwrap().json().unwrap();
    assert_eq!(changes["items"].as_array().unwrap().len(), 2);
    // Audited like any other event: in the export, and in the log an offline check verifies.
    let (code, out, err) = server.client("root-secret", &["audit", "export", "--type", "directory_changed"]);
    assert_eq!(code, 0, "{err}");
    let exported: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(exported.iter().map(|r| r["directory_change"]["change"]["op"].as_str().unwrap()).collect::<Vec<_>>(), ["put_user", "issue_token"], "{out}");
    assert!(exported.iter().all(|r| r["request"] == "directory" && r["actor"] == "root"), "{out}");
    drop(server);
    let out = Command::new(BIN).args(["verify", "--data"]).arg(&data).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.starts_with("verified: 0 requests, 0 events and 2 directory changes,"), "{said}");
    drop(runtime);
}

/// What `signoff serve` says on stderr when started with `config` (a TOML file's text) and
/// `flags`; it must exit 2.
fn refused_at_start(config: &str, flags: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("signoff.toml");
    std::fs::write(&file, config).unwrap();
    let out = Command::new(BIN).args(["serve", "--listen", "127.0.0.1:0", "--config"]).arg(&file).args(flags).current_dir(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{config} {flags:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_limits_tls_and_single_sign_on_settings_stop_start_up_and_are_named() {
    for (config, flags, said) in [
        ("[rate_limits]\nactions = { caller = \"lots\" }\n", &[][..], "error: rate_limits.actions.caller: `lots` is not a rate"),
        ("[rate_limits]\ntrusted_proxies = [\"10.0.0.0/40\"]\n", &[], "error: rate_limits.trusted_proxies: `10.0.0.0/40`"),
        ("[oidc]\nissuer = \"https://idp.example\"\nclient_id = \"signoff\"\nclock_skew = \"1h\"\n", &[], "error: oidc.clock_skew:"),
        ("[oidc]\nissuer = \"idp.example\"\nclient_id = \"signoff\"\n", &[], "error: oidc.issuer:"),
        ("", &["--tls-cert", "server.crt"], "error: tls-key: --tls-cert needs --tls-key"),
        ("", &["--tls-cert", "missing.crt", "--tls-key", "missing.key"], "error: tls-cert: missing.crt:"),
        ("", &["--client-ca", "ca.crt"], "error: client-ca: client certificates need TLS"),
    ] {
        let stderr = refused_at_start(config, flags);
        assert!(stderr.starts_with(said), "{config} {flags:?}: {stderr}");
    }
}
