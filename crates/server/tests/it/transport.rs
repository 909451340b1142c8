//! Limits at the transport, through real sockets: refused bodies still get their 413, slow and
//! idle clients are closed, connections are capped, and errors raised below the handlers carry
//! a problem body like every other error.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use signoff_testkit::app::*;
use serde_json::Value;
use signoff_server::transport::Limits;

fn addr(app: &App) -> String {
    app.url.trim_start_matches("http://").to_string()
}

/// Everything the server sends until it closes the connection (or `within` passes).
fn read_all(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    read_until_closed(stream, within).0
}

/// What the server sends, and whether it then closed the connection within `within` (a read
/// that times out means it left it open). A reset counts as closed.
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut out = Vec::new();
    let closed = match stream.read_to_end(&mut out) {
        Ok(_) => true,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    };
    (out, closed)
}

/// The status and problem body of one raw answer.
fn problem(raw: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no answer: {text:?}"));
    let status = head[9..12].parse().unwrap();
    assert!(head.to_ascii_lowercase().contains("content-type: application/problem+json"), "{head}");
    let length: usize = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|n| n.trim().parse().unwrap())).unwrap();
    let problem: Value = serde_json::from_str(&body[..length]).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(problem["status"], status, "{problem}");
    (status, problem)
}

/// A request head for `method path` with `extra` header lines.
fn head(method: &str, path: &str, extra: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer alice-token\r\n{extra}\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_body_still_gets_its_413() {
    let app = spawn_app().await;
    let addr = addr(&app);
    let answers = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        // A client that writes its whole body (12 MB, as Python's urllib does) before reading.
        let body = vec![b' '; 12 * 1024 * 1024];
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(head("POST", "/v1/requests", &format!("content-type: application/json\r\ncontent-length: {}\r\n", body.len())).as_bytes()).unwrap();
        s.write_all(&body).expect("the server reads the whole body before answering");
        out.push(read_all(&mut s, Duration::from_secs(10)));
        // The same without a declared length (chunked).
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(head("POST", "/v1/requests", "content-type: application/json\r\ntransfer-encoding: chunked\r\n").as_bytes()).unwrap();
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..48 {
            s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).unwrap();
            s.write_all(&chunk).unwrap();
            s.write_all(b"\r\n").unwrap();
        }
        s.write_all(b"0\r\n\r\n").unwrap();
        out.push(read_all(&mut s, Duration::from_secs(10)));
        // A client that waits for `100 Continue` gets the 413 before sending anything.
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(head("POST", "/v1/requests", "content-type: application/json\r\ncontent-length: 12582912\r\nexpect: 100-continue\r\n").as_bytes()).unwrap();
        let answer = read_all(&mut s, Duration::from_secs(10));
        assert!(!String::from_utf8_lossy(&answer).contains("100 Continue"), "the body is not invited");
        out.push(answer);
        out
    })
    .await
    .unwrap();
    for raw in answers {
        let (status, p) = problem(&raw);
        assert_eq!((status, p["code"].as_str()), (413, Some("too_large")), "{p}");
    }
    // The server is fine afterwards.
    let (status, _) = app.get("alice", "/v1/inbox").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_closed() {
    let limits = Limits { header_timeout: Duration::from_millis(400), body_timeout: Duration::from_millis(400), ..Limits::default() };
    let app = spawn_app_limited(limits).await;
    let addr = addr(&app);
    tokio::task::spawn_blocking(move || {
        // Headers a byte at a time: the deadline is for the whole head, so it is closed.
        let mut s = TcpStream::connect(&addr).unwrap();
        let start = Instant::now();
        let text = head("GET", "/v1/inbox", "");
        let mut closed = false;
        for b in text.as_bytes().iter().take(text.len() - 2) {
            if s.write_all(&[*b]).is_err() {
                closed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(40));
            if start.elapsed() > Duration::from_secs(5) {
                break;
            }
        }
        let (answer, eof) = read_until_closed(&mut s, Duration::from_secs(5));
        assert!(closed || eof, "the server closed the connection");
        assert!(answer.is_empty(), "nothing is answered to a head that never completes: {:?}", String::from_utf8_lossy(&answer));
        assert!(start.elapsed() < Duration::from_secs(5), "closed after the header timeout, not left open");
        // A connection that sends nothing, and an idle keep-alive connection, are closed too.
        let mut s = TcpStream::connect(&addr).unwrap();
        let (answer, eof) = read_until_closed(&mut s, Duration::from_secs(5));
        assert!(eof && answer.is_empty(), "a silent connection is closed");
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        let (answer, eof) = read_until_closed(&mut s, Duration::from_secs(5));
        assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"), "answered");
        assert!(eof, "then closed when idle");
        // A body that does not arrive in time is 408.
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(head("POST", "/v1/requests", "content-type: application/json\r\ncontent-length: 100\r\n").as_bytes()).unwrap();
        s.write_all(b"{\"policy\"").unwrap();
        let (status, p) = problem(&read_all(&mut s, Duration::from_secs(5)));
        assert_eq!((status, p["code"].as_str()), (408, Some("request_timeout")), "{p}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped() {
    let app = spawn_app_limited(Limits { max_connections: 3, ..Limits::default() }).await;
    let addr = addr(&app);
    tokio::task::spawn_blocking(move || {
        let held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(&addr).unwrap()).collect();
        let mut extra = TcpStream::connect(&addr).unwrap();
        let (status, p) = problem(&read_all(&mut extra, Duration::from_secs(5)));
        assert_eq!((status, p["code"].as_str()), (503, Some("busy")), "{p}");
        assert!(p["detail"].as_str().unwrap().contains('3'), "{p}");
        drop(held);
    })
    .await
    .unwrap();
    // Once they are gone, calls are served again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // (A call racing the release may still be refused, or cut off.)
        if app.http.get(format!("{}/healthz", app.url)).send().await.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "connections were not released");
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_below_the_handlers_are_problems() {
    let app = spawn_app().await;
    let addr = addr(&app);
    tokio::task::spawn_blocking(move || {
        let ask = |raw: &[u8]| {
            let mut s = TcpStream::connect(&addr).unwrap();
            let _ = s.write_all(raw);
            problem(&read_all(&mut s, Duration::from_secs(5)))
        };
        let long = format!("/v1/requests?subject={}", "x".repeat(9000));
        let (status, p) = ask(head("GET", &long, "").as_bytes());
        assert_eq!((status, p["code"].as_str()), (414, Some("uri_too_long")), "{p}");
        let very_long = format!("/v1/requests?subject={}", "x".repeat(70_000));
        let (status, p) = ask(head("GET", &very_long, "").as_bytes());
        assert_eq!(p["status"], status, "{p}");
        assert!(status == 414 || status == 431, "{p}");
        let (status, p) = ask(head("GET", "/v1/inbox", &format!("x-big: {}\r\n", "y".repeat(40_000))).as_bytes());
        assert_eq!((status, p["code"].as_str()), (431, Some("headers_too_large")), "{p}");
        let (status, p) = ask(head("GET", "/v1/inbox", &format!("x-huge: {}\r\n", "y".repeat(100_000))).as_bytes());
        assert_eq!((status, p["code"].as_str()), (431, Some("headers_too_large")), "hyper's own 431: {p}");
        let many: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
        let (status, p) = ask(head("GET", "/v1/inbox", &many).as_bytes());
        assert_eq!((status, p["code"].as_str()), (431, Some("headers_too_large")), "{p}");
        let (status, p) = ask(b"GARBAGE\r\n\r\n");
        assert_eq!((status, p["code"].as_str()), (400, Some("malformed_request")), "{p}");
        let (status, p) = ask(b"GET / HTTP/1.1\r\nbad header line\r\n\r\n");
        assert_eq!((status, p["code"].as_str()), (400, Some("malformed_request")), "{p}");
    })
    .await
    .unwrap();
}
