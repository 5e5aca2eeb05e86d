//! Headless Chromium from Debian's packages, driven over the Chrome DevTools Protocol: pages are
//! loaded from the appliance on `http://localhost:PORT`, buttons are clicked with real mouse
//! events, and a CDP virtual authenticator (CTAP2, internal transport, resident keys, user
//! verification) answers WebAuthn prompts. Screenshots go to `target/tmp/screenshots/`.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tempfile::TempDir;
use tungstenite::{Message, WebSocket};

use crate::common::clean_command;

/// Where screenshots are kept, as test artifacts.
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
}

/// A headless Chromium with one page open; killed when dropped.
pub struct Browser {
    child: Child,
    _profile: TempDir,
    socket: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
    /// Events received while waiting for replies, oldest first.
    events: Vec<Value>,
    /// The virtual authenticator's id.
    authenticator_id: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Starts Chromium, opens a blank page and gives it a virtual passkey authenticator.
    pub fn start() -> Self {
        let profile = tempfile::tempdir().unwrap();
        let child = clean_command("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1000,1400",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromium (apt-get install chromium)");
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let (port, path) = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break (port.to_owned(), path.to_owned());
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromium did not open its DevTools port"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let stream = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let (socket, _) =
            tungstenite::client(format!("ws://127.0.0.1:{port}{path}"), stream).unwrap();
        let mut browser = Browser {
            child,
            _profile: profile,
            socket,
            session: String::new(),
            next_id: 0,
            events: Vec::new(),
            authenticator_id: String::new(),
        };
        let target = browser.browser_call("Target.createTarget", json!({"url": "about:blank"}));
        let attached = browser.browser_call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        browser.call("Page.enable", json!({}));
        browser.call("Runtime.enable", json!({}));
        browser.call("WebAuthn.enable", json!({}));
        let added = browser.call(
            "WebAuthn.addVirtualAuthenticator",
            json!({"options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": true,
                "hasUserVerification": true,
                "isUserVerified": true,
                "automaticPresenceSimulation": true,
            }}),
        );
        browser.authenticator_id = added["authenticatorId"].as_str().unwrap().to_owned();
        browser
    }

    fn send(&mut self, message: Value) -> Value {
        let shown = message.to_string();
        self.exchange(message)
            .unwrap_or_else(|error| panic!("{shown} -> {error}"))
    }

    /// Sends a CDP message and returns its result, or the error Chromium answered with.
    fn exchange(&mut self, mut message: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        message["id"] = id.into();
        self.socket
            .send(Message::text(message.to_string()))
            .unwrap();
        loop {
            let text = match self.socket.read() {
                Ok(Message::Text(text)) => text,
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                    panic!("no CDP reply to {message}")
                }
                Err(e) => panic!("CDP socket: {e}"),
            };
            let reply: Value = serde_json::from_str(&text).unwrap();
            if reply["id"] == id {
                return match reply.get("error") {
                    Some(error) => Err(error.clone()),
                    None => Ok(reply["result"].clone()),
                };
            }
            self.events.push(reply);
        }
    }

    fn browser_call(&mut self, method: &str, params: Value) -> Value {
        self.send(json!({"method": method, "params": params}))
    }

    /// A CDP command on the page.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.try_call(method, params.clone())
            .unwrap_or_else(|error| panic!("{method} {params} -> {error}"))
    }

    /// A CDP command on the page; its error, if Chromium answers with one.
    fn try_call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        let session = self.session.clone();
        self.exchange(json!({"method": method, "params": params, "sessionId": session}))
    }

    /// Loads `url` (following redirects) and waits until the new document has loaded.
    pub fn open(&mut self, url: &str) {
        self.mark_page();
        self.call("Page.navigate", json!({"url": url}));
        self.wait_for_new_page();
    }

    /// Waits for a navigation the page started itself (a link, a redirect after login).
    pub fn wait_for_new_page(&mut self) {
        self.wait_until("!window.__leaving && document.readyState === 'complete'");
    }

    /// Marks the current document, so [`Browser::wait_for_new_page`] can tell it was replaced
    /// (the mark is gone once a new document is in place).
    pub fn mark_page(&mut self) {
        self.eval("window.__leaving = true");
    }

    /// Evaluates a JavaScript expression (awaiting a promise) and returns its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        self.eval_across_navigation(expression)
            .unwrap_or_else(|| panic!("{expression}: the page went away while it ran"))
    }

    /// Like [`Browser::eval`], but `None` where the page went away under the expression
    /// (a navigation destroys the context it ran in).
    fn eval_across_navigation(&mut self, expression: &str) -> Option<Value> {
        let params = json!({"expression": expression, "awaitPromise": true, "returnByValue": true});
        match self.try_call("Runtime.evaluate", params) {
            Ok(result) => {
                assert!(
                    result.get("exceptionDetails").is_none(),
                    "{expression}: {result}"
                );
                Some(result["result"]["value"].clone())
            }
            // "Execution context was destroyed", "Cannot find context with specified id",
            // "Inspected target navigated or closed": all mean the document was replaced.
            Err(error)
                if ["context", "navigated"]
                    .iter()
                    .any(|gone| error["message"].as_str().unwrap_or("").contains(gone)) =>
            {
                None
            }
            Err(error) => panic!("{expression} -> {error}"),
        }
    }

    /// The text of the element `selector` finds, or `Null`.
    pub fn text(&mut self, selector: &str) -> Value {
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({}); return e ? e.textContent : null; }})()",
            json!(selector)
        ))
    }

    /// The centre of `selector`'s box, in CSS pixels.
    fn centre(&mut self, selector: &str) -> (f64, f64) {
        let at = self.eval(&format!(
            "(() => {{ const e = document.querySelector({}); e.scrollIntoView({{block: 'center'}}); \
             const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()",
            json!(selector)
        ));
        (at[0].as_f64().unwrap(), at[1].as_f64().unwrap())
    }

    fn mouse(&mut self, kind: &str, (x, y): (f64, f64)) {
        self.call(
            "Input.dispatchMouseEvent",
            json!({"type": kind, "x": x, "y": y, "button": "left", "buttons": 1, "clickCount": 1}),
        );
    }

    /// Clicks `selector` with real mouse events.
    pub fn click(&mut self, selector: &str) {
        let at = self.centre(selector);
        self.mouse("mousePressed", at);
        self.mouse("mouseReleased", at);
    }

    /// Types `text` into `selector`.
    pub fn type_into(&mut self, selector: &str, text: &str) {
        self.click(selector);
        self.call("Input.insertText", json!({"text": text}));
    }

    /// Draws a stroke through `points` (fractions of `selector`'s box) with the mouse.
    pub fn draw(&mut self, selector: &str, points: &[(f64, f64)]) {
        let rect = self.eval(&format!(
            "(() => {{ const e = document.querySelector({}); e.scrollIntoView({{block: 'center'}}); \
             const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }})()",
            json!(selector)
        ));
        let at = |(fx, fy): (f64, f64)| {
            (
                rect[0].as_f64().unwrap() + fx * rect[2].as_f64().unwrap(),
                rect[1].as_f64().unwrap() + fy * rect[3].as_f64().unwrap(),
            )
        };
        self.mouse("mousePressed", at(points[0]));
        for point in &points[1..] {
            self.mouse("mouseMoved", at(*point));
        }
        self.mouse("mouseReleased", at(points[points.len() - 1]));
    }

    /// Waits until `expression` is truthy, then returns its value.
    pub fn wait_until(&mut self, expression: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(value) = self.eval_across_navigation(expression)
                && !(value.is_null() || value == false || value == "")
            {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {expression}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `#message` says something, and returns it.
    pub fn message(&mut self) -> String {
        self.wait_until(
            "(() => { const m = document.getElementById('message'); \
             return m && m.className ? m.textContent : null; })()",
        )
        .as_str()
        .unwrap()
        .to_owned()
    }

    /// Clicks a decision button, checks the page says `recorded`, and waits for the page
    /// to reload showing the request's new `status`.
    pub fn decide(&mut self, button: &str, recorded: &str, status: &str) {
        // Marked before the click: the page reloads itself soon after it reports.
        self.mark_page();
        self.click(button);
        // The report, or (on a slow machine) the reloaded page that replaced it.
        let seen = self.wait_until(
            "(() => { if (!window.__leaving) return '(reloaded)'; \
             const m = document.getElementById('message'); \
             return m && m.className ? m.textContent : null; })()",
        );
        let seen = seen.as_str().unwrap();
        assert!(seen == "(reloaded)" || seen.contains(recorded), "{seen}");
        self.wait_for_new_page();
        assert_eq!(self.text("#status"), status);
    }

    /// Saves a PNG screenshot of the page as `NAME.png` among the test artifacts.
    pub fn screenshot(&mut self, name: &str) -> PathBuf {
        // A document still being replaced has no size yet, and Chromium refuses to shoot it.
        self.wait_until(
            "document.readyState === 'complete' && document.documentElement.scrollWidth > 0 \
             && document.documentElement.scrollHeight > 0",
        );
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// The virtual authenticator's credentials.
    pub fn credentials(&mut self) -> Vec<Value> {
        let id = self.authenticator_id.clone();
        let found = self.call("WebAuthn.getCredentials", json!({"authenticatorId": id}));
        found["credentials"].as_array().cloned().unwrap_or_default()
    }
}
