//! The real `signoff` binary as a test drives it: a server on port 0 whose stdout is kept, and
//! client commands run against it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// A blocking HTTP client for the tests (after choosing the TLS implementation, as the binary
/// does).
pub fn http() -> reqwest::blocking::Client {
    signoff_server::install_tls();
    reqwest::blocking::Client::new()
}

/// A running `signoff serve`.
pub struct Server {
    pub child: Child,
    pub url: String,
    /// Every line the server printed on stdout after the first.
    pub stdout: Arc<Mutex<Vec<String>>>,
    bin: PathBuf,
}

impl Server {
    /// `bin serve` on port 0 with `data`.
    pub fn start(bin: &str, data: &Path) -> Server {
        Server::serve(bin, data, &[], Stdio::null())
    }

    /// `bin serve` on port 0 with `data` and `extra` arguments; reads the address from the
    /// first line, then keeps draining stdout so the server never blocks on a full pipe.
    pub fn serve(bin: &str, data: &Path, extra: &[&std::ffi::OsStr], stderr: Stdio) -> Server {
        Server::serve_with(bin, data, extra, stderr, &[])
    }

    /// `serve` with `env` set for the server.
    pub fn serve_with(bin: &str, data: &Path, extra: &[&std::ffi::OsStr], stderr: Stdio, env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(extra)
            .envs(env.iter().copied())
            .env_remove("SIGNOFF_LISTEN")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let url = first.strip_prefix("listening on ").unwrap_or_else(|| panic!("first line was {first:?}")).to_string();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let keep = stdout.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                keep.lock().unwrap().push(line);
            }
        });
        Server { child, url, stdout, bin: bin.into() }
    }

    /// Runs the client command `args` against this server as the holder of `token`: exit
    /// code, stdout, stderr.
    pub fn client(&self, token: &str, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(&self.bin)
            .args(args)
            .env("SIGNOFF_URL", &self.url)
            .env("SIGNOFF_TOKEN", token)
            .output()
            .unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// A test that fails before it stops its server does not leave the server running.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
