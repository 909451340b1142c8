//! A real headless Chromium, driven over WebDriver (the W3C protocol, spoken with a plain HTTP
//! client): Debian's `chromium` and `chromedriver`, each run in a fresh profile. Outside CI a
//! machine without them skips the test, saying so; with `CI` set it fails.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a page may take to show what a test waits for.
const PATIENCE: Duration = Duration::from_secs(10);

/// A browser session; the driver and the browser end with it.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

/// An element of the current page.
#[derive(Clone)]
pub struct Element(String);

impl Browser {
    /// A headless Chromium `width` × `height` pixels large, or `None` (after saying so) where
    /// this machine has none and `CI` is not set.
    pub async fn start(width: u32, height: u32) -> Option<Browser> {
        if !std::path::Path::new(CHROMIUM).exists() || !std::path::Path::new(CHROMEDRIVER).exists() {
            assert!(std::env::var_os("CI").is_none(), "CI is set but {CHROMIUM} or {CHROMEDRIVER} is missing: .ci/run installs chromium and chromium-driver");
            eprintln!("browser test SKIPPED: no {CHROMIUM} and {CHROMEDRIVER} on this machine (apt install chromium chromium-driver)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(CHROMEDRIVER).arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        eventually(async || http.get(format!("{base}/status")).send().await.map_err(|e| format!("chromedriver did not start: {e}"))).await;
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--hide-scrollbars",
        ];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push(format!("--window-size={width},{height}"));
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {"binary": CHROMIUM, "args": args}}}});
        let answer: Value = http.post(format!("{base}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let session = answer["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {answer}"));
        Some(Browser { http, session: format!("{base}/session/{session}"), driver, _profile: profile })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let answer: Value = req.send().await.unwrap().json().await.unwrap();
        answer["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    pub async fn title(&self) -> String {
        self.call(reqwest::Method::GET, "/title", None).await.as_str().unwrap_or_default().to_string()
    }

    /// The first element `css` selects, once the page has one.
    pub async fn find(&self, css: &str) -> Element {
        eventually(async || {
            let v = self.call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await;
            v[ELEMENT].as_str().map(|id| Element(id.to_string())).ok_or_else(|| format!("no element `{css}` appeared: {v}"))
        })
        .await
    }

    /// Waits until the page's title is `title`.
    pub async fn wait_for_title(&self, title: &str) {
        eventually(async || {
            let now = self.title().await;
            if now == title { Ok(()) } else { Err(format!("the title stayed {now:?}, not {title:?}")) }
        })
        .await
    }

    /// Empties a text field.
    pub async fn clear(&self, e: &Element) {
        self.call(reqwest::Method::POST, &format!("/element/{}/clear", e.0), Some(json!({}))).await;
    }

    pub async fn type_into(&self, e: &Element, text: &str) {
        self.call(reqwest::Method::POST, &format!("/element/{}/value", e.0), Some(json!({ "text": text }))).await;
    }

    pub async fn click(&self, e: &Element) {
        self.call(reqwest::Method::POST, &format!("/element/{}/click", e.0), Some(json!({}))).await;
    }

    /// Asks `command` (e.g. `click`) of what `css` selects, finding it again if a live page
    /// swapped it out meanwhile; the answer.
    async fn on(&self, css: &str, method: reqwest::Method, command: &str, body: Option<Value>) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let e = self.find(css).await;
            let v = self.call(method.clone(), &format!("/element/{}/{command}", e.0), body.clone()).await;
            match v["error"].as_str() {
                None => return v,
                Some("stale element reference") if Instant::now() < deadline => continue,
                Some(other) => panic!("{command} of `{css}`: {other}: {v}"),
            }
        }
    }

    /// Clicks what `css` selects, finding it again if a live page swapped it out meanwhile.
    pub async fn click_on(&self, css: &str) {
        self.on(css, reqwest::Method::POST, "click", Some(json!({}))).await;
    }

    /// Types `text` into what `css` selects (WebDriver key codes such as `ENTER` included),
    /// finding it again if a live page swapped it out meanwhile.
    pub async fn type_on(&self, css: &str, text: &str) {
        self.on(css, reqwest::Method::POST, "value", Some(json!({ "text": text }))).await;
    }

    /// Waits until `script` (the body of a function) returns `true` in the page.
    pub async fn wait_until(&self, script: &str) {
        eventually(async || if self.execute(script).await == Value::Bool(true) { Ok(()) } else { Err(format!("never true: {script}")) }).await
    }

    /// The text of what `css` selects, once it holds `needle`.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> String {
        eventually(async || {
            let text = self.on(css, reqwest::Method::GET, "text", None).await.as_str().unwrap_or_default().to_string();
            if text.contains(needle) { Ok(text) } else { Err(format!("`{css}` never said {needle:?}: {text:?}")) }
        })
        .await
    }

    /// Runs `script` in the page; what it returns.
    pub async fn execute(&self, script: &str) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({ "script": script, "args": [] }))).await
    }

    /// An attribute of what `css` selects (`None` when it has none), found again if a live page
    /// swapped it out meanwhile.
    pub async fn attribute(&self, css: &str, name: &str) -> Option<String> {
        self.on(css, reqwest::Method::GET, &format!("attribute/{name}"), None).await.as_str().map(str::to_string)
    }

    pub async fn text(&self, e: &Element) -> String {
        self.call(reqwest::Method::GET, &format!("/element/{}/text", e.0), None).await.as_str().unwrap_or_default().to_string()
    }

    /// The page as a PNG, saved as `name`.png under `dir` (made if needed); returns the path.
    pub async fn screenshot(&self, dir: &std::path::Path, name: &str) -> std::path::PathBuf {
        let b64 = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(b64.as_str().unwrap_or_default()).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

/// Calls `check` every 20 ms until it answers `Ok`, for at most `PATIENCE`; then panics with
/// what its last `Err` said.
async fn eventually<T>(mut check: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match check().await {
            Ok(t) => return t,
            Err(why) if Instant::now() >= deadline => panic!("{why}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// WebDriver's key codes, for `type_on`.
pub const ENTER: &str = "\u{E007}";
pub const ESCAPE: &str = "\u{E00C}";
pub const TAB: &str = "\u{E004}";

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
