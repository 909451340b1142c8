//! A real headless browser, driven over WebDriver (the W3C protocol, spoken with a plain HTTP
//! client): Debian's `chromium` with `chromedriver`, or Debian's `firefox-esr` with Mozilla's
//! `geckodriver` (from crates.io: `cargo install geckodriver`), each run in a fresh profile.
//! Outside CI a machine without them skips the test, saying so; with `CI` set it fails.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const FIREFOX: &str = "/usr/bin/firefox-esr";
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
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--hide-scrollbars",
        ];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push(format!("--window-size={width},{height}"));
        let mut options = json!({"binary": CHROMIUM, "args": args});
        if width < 500 {
            // A desktop window is at least 500 pixels wide: narrower is a phone, emulated.
            options["mobileEmulation"] = json!({"deviceMetrics": {"width": width, "height": height, "pixelRatio": 1.0, "touch": true}});
        }
        let caps = json!({"browserName": "chrome", "goog:chromeOptions": options});
        Some(Browser::connect(Command::new(CHROMEDRIVER), "--port", caps, profile).await)
    }

    /// A headless Firefox `width` × `height` pixels large (its viewport), or `None` (after saying
    /// so) where this machine has no Firefox or geckodriver and `CI` is not set.
    pub async fn firefox(width: u32, height: u32) -> Option<Browser> {
        let driver = geckodriver();
        let (Some(driver), true) = (&driver, std::path::Path::new(FIREFOX).exists()) else {
            assert!(std::env::var_os("CI").is_none(), "CI is set but {FIREFOX} or geckodriver is missing: .ci/run installs firefox-esr and geckodriver");
            eprintln!("browser test SKIPPED: no {FIREFOX} or geckodriver on this machine (apt install firefox-esr; cargo install geckodriver)");
            return None;
        };
        let profile = tempfile::tempdir().unwrap();
        // Quiet: no updates, telemetry, first-run pages or captive-portal checks.
        let prefs = json!({
            "app.update.enabled": false, "browser.shell.checkDefaultBrowser": false, "datareporting.policy.dataSubmissionEnabled": false,
            "toolkit.telemetry.enabled": false, "network.captive-portal-service.enabled": false, "browser.startup.homepage_override.mstone": "ignore",
            "network.connectivity-service.enabled": false, "browser.safebrowsing.update.enabled": false,
        });
        let caps = json!({"browserName": "firefox", "moz:firefoxOptions": {"binary": FIREFOX, "args": ["-headless"], "prefs": prefs}});
        let mut command = Command::new(driver);
        command.env("TMPDIR", profile.path());
        let browser = Browser::connect(command, "--port", caps, profile).await;
        // Firefox sizes its window, not its viewport: size the viewport by what the chrome takes.
        let inner = browser.execute("return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]").await;
        let (dw, dh) = (inner[0].as_u64().unwrap_or(0), inner[1].as_u64().unwrap_or(0));
        browser.call(reqwest::Method::POST, "/window/rect", Some(json!({"width": u64::from(width) + dw, "height": u64::from(height) + dh}))).await;
        Some(browser)
    }

    /// Starts `driver` on a free port and opens a session with `capabilities`.
    async fn connect(mut driver: Command, port_flag: &str, capabilities: Value, profile: tempfile::TempDir) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // In a process group of its own, so that dropping the browser ends whatever it started.
        let driver = std::os::unix::process::CommandExt::process_group(driver.arg(format!("{port_flag}={port}")), 0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        signoff_server::install_tls();
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        eventually(async || http.get(format!("{base}/status")).send().await.map_err(|e| format!("the WebDriver server did not start: {e}"))).await;
        let caps = json!({"capabilities": {"alwaysMatch": capabilities}});
        let answer: Value = http.post(format!("{base}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let session = answer["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {answer}"));
        Browser { http, session: format!("{base}/session/{session}"), driver, _profile: profile }
    }

    /// One WebDriver command of this session; the answer's `value`.
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

    /// Presses `key` (one of the key codes below) wherever the focus is, as a keyboard does.
    pub async fn press(&self, key: &str) {
        let actions = json!({"actions": [{"type": "key", "id": "keyboard", "actions": [{"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]}]});
        self.call(reqwest::Method::POST, "/actions", Some(actions)).await;
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

/// geckodriver on the `PATH` or where `cargo install` puts it.
fn geckodriver() -> Option<std::path::PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME").map(std::path::PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cargo")));
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(cargo_home.map(|c| c.join("bin")))
        .map(|d| d.join("geckodriver"))
        .find(|p| p.is_file())
}

/// WebDriver's key codes, for `type_on`.
pub const ENTER: &str = "\u{E007}";
pub const ESCAPE: &str = "\u{E00C}";
pub const TAB: &str = "\u{E004}";

impl Drop for Browser {
    /// Ends the session, which closes the browser, then the driver and anything it left: a
    /// killed driver alone leaves its browser running, and a test run leaks a browser a test.
    fn drop(&mut self) {
        let session = self.session.clone();
        // (A blocking call on a thread of its own: this may drop inside the tests' runtime.)
        let _ = std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build();
            http.map(|c| c.delete(session).send())
        })
        .join();
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
