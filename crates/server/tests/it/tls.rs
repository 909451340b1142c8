//! HTTPS and mutual TLS on the real listener, with certificates the test makes: a client that
//! trusts the authority gets answers and a plain-HTTP one does not; with a client CA only a
//! client with a certificate from it connects; a reload serves the new certificate to new
//! connections while one already open keeps working.

use std::sync::Arc;

use signoff_server::SystemClock;
use signoff_server::tls::TlsFiles;
use signoff_testkit::app::*;
use signoff_testkit::certs::{Authority, Issued};

/// A client that trusts `ca` and, if given, presents `identity`.
fn client(ca: &Authority, identity: Option<&Issued>) -> reqwest::Client {
    signoff_server::install_tls();
    let mut b = reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap()]);
    if let Some(id) = identity {
        b = b.identity(reqwest::Identity::from_pem(id.identity_pem().as_bytes()).unwrap());
    }
    b.build().unwrap()
}

async fn tls_app(files: TlsFiles) -> (App, String) {
    let app = spawn_app_configured(Arc::new(SystemClock), None, |c| c.tls = Some(files)).await;
    let url = app.url.replace("http://", "https://");
    (app, url)
}

async fn inbox(http: &reqwest::Client, url: &str) -> Result<u16, reqwest::Error> {
    http.get(format!("{url}/v1/inbox")).bearer_auth("mark-token").send().await.map(|r| r.status().as_u16())
}

#[tokio::test]
async fn https_answers_clients_that_trust_it_and_reloads_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (Authority::new("first CA"), Authority::new("second CA"));
    let (cert, key) = first.server().write(dir.path(), "server");
    let (app, url) = tls_app(TlsFiles { cert: cert.clone(), key: key.clone(), client_ca: None }).await;
    let trusting_first = client(&first, None);
    assert_eq!(inbox(&trusting_first, &url).await.unwrap(), 200);
    let plain = reqwest::Client::new();
    assert!(plain.get(format!("{}/healthz", app.url)).send().await.is_err(), "plain HTTP gets no answer from an HTTPS listener");
    assert!(inbox(&client(&second, None), &url).await.is_err(), "a client that does not trust the certificate cannot connect");

    // A new certificate from another authority, loaded as SIGHUP would.
    second.server().write(dir.path(), "server");
    app.service.tls().unwrap().reload().unwrap();
    assert_eq!(inbox(&trusting_first, &url).await.unwrap(), 200, "the connection open before the reload goes on");
    assert_eq!(inbox(&client(&second, None), &url).await.unwrap(), 200, "new connections get the new certificate");
    assert!(inbox(&client(&first, None), &url).await.is_err(), "and no longer the old one");

    // A broken file keeps what was loaded.
    std::fs::write(&key, "not a key").unwrap();
    let err = app.service.tls().unwrap().reload().unwrap_err();
    assert!(err.starts_with("tls-key:"), "{err}");
    assert_eq!(inbox(&client(&second, None), &url).await.unwrap(), 200);
}

#[tokio::test]
async fn with_a_client_ca_only_clients_with_its_certificates_connect() {
    let dir = tempfile::tempdir().unwrap();
    let (servers, clients, strangers) = (Authority::new("server CA"), Authority::new("client CA"), Authority::new("stranger CA"));
    let (cert, key) = servers.server().write(dir.path(), "server");
    let client_ca = clients.write(dir.path(), "clients");
    let (_app, url) = tls_app(TlsFiles { cert, key, client_ca: Some(client_ca) }).await;
    assert!(inbox(&client(&servers, None), &url).await.is_err(), "no client certificate, no connection");
    let stranger = strangers.client("mallory");
    assert!(inbox(&client(&servers, Some(&stranger)), &url).await.is_err(), "a certificate from another authority is refused");
    let ours = clients.client("deploy-bot");
    assert_eq!(inbox(&client(&servers, Some(&ours)), &url).await.unwrap(), 200);
}

#[test]
fn bad_files_are_named_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new("CA");
    let (cert, key) = ca.server().write(dir.path(), "server");
    let (_, other_key) = ca.server().write(dir.path(), "other");
    let load = |cert: &std::path::Path, key: &std::path::Path, client_ca: Option<std::path::PathBuf>| {
        signoff_server::tls::Tls::load(TlsFiles { cert: cert.into(), key: key.into(), client_ca }).err().unwrap_or_default()
    };
    assert!(load(&dir.path().join("missing.crt"), &key, None).starts_with("tls-cert:"));
    assert!(load(&key, &key, None).starts_with("tls-cert:"), "a key is not a certificate");
    assert!(load(&cert, &cert, None).starts_with("tls-key:"), "a certificate is not a key");
    assert!(load(&cert, &other_key, None).starts_with("tls-key:"), "a key of another certificate");
    assert!(load(&cert, &key, Some(dir.path().join("none.crt"))).starts_with("client-ca:"));
    assert_eq!(load(&cert, &key, None), "", "good files load");
}
