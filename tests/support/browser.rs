//! For the console's page tests: headless chromium driven through Debian's
//! `chromedriver` (fantoccini), with screenshots and waits on what the page
//! shows. Needs `chromium` and `chromedriver` on PATH (`apt-get install
//! chromium chromium-driver`); a missing one fails the test, never skips it.

use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::{free_port, DEADLINE};

/// Where [`Browser::screenshot`] saves its PNGs.
pub const SCREENSHOTS: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/console-screenshots");

/// At most this many chromiums at once: each wants a core while a page
/// loads, and the tests run in parallel on small machines.
static BROWSERS: Semaphore = Semaphore::const_new(2);

/// A headless chromium under its own chromedriver. Dropping it kills
/// chromedriver's whole process group (the chromium processes with it).
pub struct Browser {
    pub client: Client,
    driver: Driver,
    /// chromedriver's `http://127.0.0.1:PORT`.
    driver_url: String,
    _permit: SemaphorePermit<'static>,
}

/// Run in every page before its own scripts: records uncaught errors,
/// unhandled rejections and `alert`/`confirm`/`prompt` calls, which
/// [`Browser::close`] then reports.
const PROBE: &str = r#"
window.__probe = { errors: [], dialogs: [] };
window.addEventListener('error', (e) => window.__probe.errors.push(String(e.message)));
window.addEventListener('unhandledrejection', (e) =>
  window.__probe.errors.push('unhandled rejection: ' + String(e.reason)));
for (const name of ['alert', 'confirm', 'prompt']) {
  window[name] = (text) => { window.__probe.dialogs.push(name + ': ' + String(text)); };
}
"#;

/// The path of `name` on PATH, if any.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Bounds a WebDriver call: a hung browser fails the test, not hangs it.
async fn bounded<T, E: std::fmt::Debug>(what: &str, call: impl Future<Output = Result<T, E>>) -> T {
    match tokio::time::timeout(DEADLINE, call).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("{what}: {e:?}"),
        Err(_) => panic!("{what}: no answer within {DEADLINE:?}"),
    }
}

impl Browser {
    /// Starts chromedriver on a free port, waits for its `/status` to say
    /// ready, and opens a headless chromium session (1280x800).
    pub async fn start() -> Browser {
        Browser::start_with(Screen::Desktop).await
    }

    /// As [`start`](Self::start), with chromium emulating a phone's
    /// screen (390x844 CSS pixels, touch): headless chromium does not
    /// size a window below 500 pixels.
    pub async fn start_phone() -> Browser {
        Browser::start_with(Screen::Phone).await
    }

    async fn start_with(screen: Screen) -> Browser {
        let missing: Vec<&str> = ["chromium", "chromedriver"]
            .into_iter()
            .filter(|name| on_path(name).is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "{missing:?} not on PATH: the console's browser tests need them. \
             Install them with `apt-get install chromium chromium-driver` (Debian/Ubuntu)."
        );
        let permit = BROWSERS
            .acquire()
            .await
            .expect("the semaphore is never closed");
        // A free port can be taken between probing and binding: try a few.
        for _ in 0..5 {
            let port = free_port();
            let mut driver = Driver(
                Command::new("chromedriver")
                    .arg(format!("--port={port}"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    // Its own group: dropping kills chromium along with it.
                    .process_group(0)
                    .spawn()
                    .expect("run chromedriver"),
            );
            let url = format!("http://127.0.0.1:{port}");
            if !driver_ready(&url, &mut driver.0).await {
                continue; // dropped: killed
            }
            let mut browser = Browser {
                client: connect(&url, screen).await,
                driver,
                driver_url: url,
                _permit: permit,
            };
            browser.set_script_timeout().await;
            browser.before_each_page(PROBE).await;
            return browser;
        }
        panic!("chromedriver did not start on a free port after 5 attempts");
    }

    async fn set_script_timeout(&mut self) {
        let timeouts = fantoccini::wd::TimeoutConfiguration::new(
            Some(DEADLINE),
            Some(DEADLINE),
            Some(Duration::ZERO),
        );
        bounded("set timeouts", self.client.update_timeouts(timeouts)).await;
    }

    /// Opens `url` and waits until the page has loaded.
    pub async fn goto(&self, url: &str) {
        bounded(&format!("open {url}"), self.client.goto(url)).await;
    }

    /// Saves a PNG of the viewport as `SCREENSHOTS/{name}.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = bounded("screenshot", self.client.screenshot()).await;
        let dir = Path::new(SCREENSHOTS);
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {SCREENSHOTS}: {e}"));
        let file = dir.join(format!("{name}.png"));
        std::fs::write(&file, png).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        println!("screenshot: {}", file.display());
        file
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the
    /// page and returns what it returns.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        bounded("execute a script", self.client.execute(script, args)).await
    }

    /// The `textContent` of every element `css` matches, in document order.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let found = self
            .js(
                "return Array.from(document.querySelectorAll(arguments[0]), e => e.textContent);",
                vec![json!(css)],
            )
            .await;
        serde_json::from_value(found).unwrap_or_default()
    }

    /// The `textContent` of the first element `css` matches, if any.
    pub async fn text(&self, css: &str) -> Option<String> {
        self.texts(css).await.into_iter().next()
    }

    /// Whether an element `css` matches is shown (has a layout box).
    pub async fn visible(&self, css: &str) -> bool {
        let shown = self
            .js(
                "const e = document.querySelector(arguments[0]);
                 return !!(e && e.getClientRects().length && getComputedStyle(e).visibility !== 'hidden');",
                vec![json!(css)],
            )
            .await;
        shown.as_bool().unwrap_or(false)
    }

    /// Waits until the first element `css` matches has a text for which
    /// `check` holds; that text (trimmed).
    pub async fn wait_text(&self, what: &str, css: &str, check: impl Fn(&str) -> bool) -> String {
        super::eventually(what, || async {
            let text = self.text(css).await?;
            let text = text.trim().to_owned();
            check(&text).then_some(text)
        })
        .await
    }

    /// Waits until `css` matches something.
    pub async fn wait_present(&self, what: &str, css: &str) {
        self.wait_count(what, css, |n| n > 0).await;
    }

    /// Waits until `css` matches nothing.
    pub async fn wait_gone(&self, what: &str, css: &str) {
        self.wait_count(what, css, |n| n == 0).await;
    }

    /// Waits until the number of elements `css` matches passes `check`.
    pub async fn wait_count(&self, what: &str, css: &str, check: impl Fn(usize) -> bool) -> usize {
        super::eventually(what, || async {
            let n = self.count(css).await;
            check(n).then_some(n)
        })
        .await
    }

    /// How many elements `css` matches.
    pub async fn count(&self, css: &str) -> usize {
        let n = self
            .js(
                "return document.querySelectorAll(arguments[0]).length;",
                vec![json!(css)],
            )
            .await;
        n.as_u64().unwrap_or(0) as usize
    }

    /// Clicks the first element `css` matches, once there is one (a real
    /// WebDriver click: it must be visible and not covered).
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        bounded(&format!("click {css}"), element.click()).await;
    }

    /// Types `text` into the first element `css` matches, after clearing it.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        bounded(&format!("clear {css}"), element.clear()).await;
        bounded(&format!("type into {css}"), element.send_keys(text)).await;
    }

    /// The first element `css` matches, once there is one.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        super::eventually(&format!("an element matching {css}"), || async {
            self.client.find(Locator::Css(css)).await.ok()
        })
        .await
    }

    /// The text of an open `alert`/`confirm` dialog, if one is open.
    pub async fn alert(&self) -> Option<String> {
        tokio::time::timeout(DEADLINE, self.client.get_alert_text())
            .await
            .expect("the browser answers")
            .ok()
    }

    /// Runs `source` in every page this browser opens from now on, before
    /// the page's own scripts (CDP `Page.addScriptToEvaluateOnNewDocument`
    /// through chromedriver).
    pub async fn before_each_page(&self, source: &str) {
        let session = bounded("the session id", self.client.session_id())
            .await
            .expect("an open session");
        let url = format!("{}/session/{session}/goog/cdp/execute", self.driver_url);
        let body = json!({
            "cmd": "Page.addScriptToEvaluateOnNewDocument",
            "params": {"source": source},
        });
        let request = hyper::Request::post(url)
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(Bytes::from(body.to_string())))
            .expect("a valid request");
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .build(HttpConnector::new());
        let response = bounded("a CDP command", client.request(request)).await;
        assert_eq!(
            response.status(),
            200,
            "Page.addScriptToEvaluateOnNewDocument"
        );
    }

    /// What the probe recorded in the current page: uncaught errors and
    /// dialogs opened, as `{"errors": [...], "dialogs": [...]}`.
    pub async fn probe(&self) -> Value {
        self.js("return window.__probe || null;", vec![]).await
    }

    /// Ends the session (chromium quits), then chromedriver. Fails the
    /// test if the current page had an uncaught error or opened a dialog.
    pub async fn close(mut self) {
        let probe = self.probe().await;
        assert_eq!(
            (&probe["errors"], &probe["dialogs"]),
            (&json!([]), &json!([])),
            "the page had errors or opened dialogs: {probe}"
        );
        let client = self.client.clone();
        let _ = tokio::time::timeout(DEADLINE, client.close()).await;
        kill_group(&mut self.driver.0);
    }
}

/// The chromedriver process: dropping it (a test failed, even while the
/// session was being opened) kills its group, chromium with it.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        kill_group(&mut self.0);
    }
}

/// `[data-testid="ID"]`.
pub fn testid(id: &str) -> String {
    format!(r#"[data-testid="{id}"]"#)
}

/// Kills chromedriver's process group (chromium with it) and reaps it.
fn kill_group(driver: &mut Child) {
    if let Ok(None) = driver.try_wait() {
        // SAFETY: kill(2) on our own child's group; no memory involved.
        unsafe {
            libc::kill(-(driver.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = driver.wait();
    }
}

/// Polls `URL/status` until chromedriver says it is ready; false if it
/// exited (its port was taken) or never got ready.
async fn driver_ready(url: &str, driver: &mut Child) -> bool {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build::<_, Empty<Bytes>>(HttpConnector::new());
    let status_url: hyper::Uri = format!("{url}/status").parse().expect("a valid URL");
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = driver.try_wait() {
            return false;
        }
        let answer = tokio::time::timeout(Duration::from_secs(2), async {
            let response = client.get(status_url.clone()).await.ok()?;
            let body = response.into_body().collect().await.ok()?.to_bytes();
            serde_json::from_slice::<Value>(&body).ok()
        })
        .await;
        if let Ok(Some(status)) = answer {
            if status["value"]["ready"] == json!(true) {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The screen a session emulates.
#[derive(Debug, Clone, Copy)]
enum Screen {
    Desktop,
    Phone,
}

/// A WebDriver session on headless chromium.
async fn connect(url: &str, screen: Screen) -> Client {
    let mut options = json!({
        "args": [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1280,800",
            "--disable-dev-shm-usage",
        ],
    });
    if Path::new("/usr/bin/chromium").is_file() {
        options["binary"] = json!("/usr/bin/chromium");
    }
    if let Screen::Phone = screen {
        options["mobileEmulation"] = json!({
            "deviceMetrics": { "width": 390, "height": 844, "pixelRatio": 3, "touch": true },
        });
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), json!("chrome"));
    capabilities.insert("goog:chromeOptions".into(), options);
    let mut builder = ClientBuilder::new(HttpConnector::new());
    builder.capabilities(capabilities);
    bounded("open a chromium session", builder.connect(url)).await
}
