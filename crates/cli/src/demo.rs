//! `signoff demo`: starts a server on a temporary database and walks the golden path (a
//! low-margin, discounted quote: the sales manager and finance both approve), printing each
//! command and its output as a transcript.

use std::sync::Arc;

use reqwest::Method;
use serde_json::json;
use signoff_api::{ActionBody, RequestState, SubmitBody};
use signoff_engine::RequestStatus;
use signoff_server::{Config, Database, Sources, SystemClock};

use crate::client::{Client, Failure, action_line, event_line, status_lines, submit_line};

pub async fn run() -> u8 {
    match walk().await {
        Ok(()) => 0,
        Err(f) => f.report(),
    }
}

async fn walk() -> Result<(), Failure> {
    let dir = tempfile::tempdir().map_err(|e| Failure::Usage(format!("temporary directory: {e}")))?;
    let config = Config::new(Database::Sqlite(dir.path().join("signoff.db")), Sources::default());
    let service = signoff_server::build(&config, Arc::new(SystemClock)).await.map_err(|e| Failure::Usage(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| Failure::Usage(e.to_string()))?;
    let url = format!("http://{}", listener.local_addr().map_err(|e| Failure::Usage(e.to_string()))?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(signoff_server::serve(service, listener, async {
        let _ = stopped.await;
    }));

    println!("# signoff demo: a server on a temporary database");
    println!("$ signoff serve --listen 127.0.0.1:0 --data {}", dir.path().display());
    println!("listening on {url}");
    let remote = crate::Remote { url: url.clone(), token: None, json: false, ca_cert: None, client_cert: None, client_key: None };
    let as_user = |user: &str| Client::new(&remote, Some(format!("{user}-token")));
    let quote = json!({ "quote": { "id": "Q-2026-0120", "customer": "ACME", "total": 48000, "discount": 0.18, "margin": 0.21, "nonstandard_clause": false } });

    println!();
    println!("# alice submits a quote: 18% discount (manager) and 21% margin (finance)");
    println!("$ SIGNOFF_TOKEN=alice-token signoff submit --policy quote-discount --subject Q-2026-0120 --context quote.json");
    let body = SubmitBody { policy: "quote-discount".into(), title: Some("ACME renewal".into()), subject: Some("Q-2026-0120".into()), context: quote, evidence: Vec::new(), resubmits: None };
    let state: RequestState = as_user("alice")?.send(Method::POST, "/v1/requests", Some(&body), None).await?.value;
    println!("{}", submit_line(&state));
    let id = state.id;

    println!("$ signoff status {id}");
    let state: RequestState = as_user("alice")?.get(&format!("/v1/requests/{id}")).await?.value;
    status_lines(&state).iter().for_each(|l| println!("{l}"));

    for (user, step, comment) in [("mark", "manager", "discount is within my band"), ("fiona", "finance", "margin acceptable for a 3-year term")] {
        println!();
        println!("# {user} approves the {step} step");
        println!("$ SIGNOFF_TOKEN={user}-token signoff action {id} --step {step} --action approve --comment \"{comment}\"");
        let body = ActionBody::Approve { step: step.into(), comment: Some(comment.into()), edits: None };
        let state: RequestState = as_user(user)?.send(Method::POST, &format!("/v1/requests/{id}/actions"), Some(&body), None).await?.value;
        println!("{}", action_line(&state, Some(step)));
    }

    println!();
    println!("$ signoff status {id}");
    let state: RequestState = as_user("alice")?.get(&format!("/v1/requests/{id}")).await?.value;
    status_lines(&state).iter().for_each(|l| println!("{l}"));
    println!("$ signoff history {id}");
    let events = as_user("alice")?.call(Method::GET, &format!("/v1/requests/{id}/events"), None, None).await?;
    for e in events["items"].as_array().into_iter().flatten() {
        println!("{}", event_line(e));
    }
    let _ = stop.send(());
    let _ = server.await;
    if state.status != RequestStatus::Approved {
        return Err(Failure::Refused { code: "demo_failed".into(), detail: format!("the request ended \"{}\"", state.status.as_str()) });
    }
    Ok(())
}
