//! Debian's Chromium, headless, driven over WebDriver (chromedriver + fantoccini) for the web
//! UI's end-to-end tests: blocking helpers around one browser session, and screenshots saved
//! for review.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian puts the browser and its driver.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's chromedriver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless Chromium session.
pub struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Option<fantoccini::Client>,
    driver: Child,
    _profile: tempfile::TempDir,
    /// Where screenshots go.
    pub shots: PathBuf,
}

/// A viewport the page must work at.
#[derive(Debug, Clone, Copy)]
pub struct Viewport {
    /// CSS pixels wide.
    pub width: u32,
    /// CSS pixels high.
    pub height: u32,
}

/// The desktop the issue names.
pub const DESKTOP: Viewport = Viewport { width: 1280, height: 800 };
/// A phone.
pub const PHONE: Viewport = Viewport { width: 390, height: 844 };

impl Browser {
    /// Starts chromedriver and a headless Chromium at `viewport` that trusts any certificate
    /// (each test server makes its own) and plays video without a user's gesture. Screenshots
    /// go to `shots`.
    pub fn start(viewport: Viewport, shots: &Path) -> Browser {
        assert!(
            Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists(),
            "{CHROMIUM} and {CHROMEDRIVER} are needed (apt-get install chromium chromium-driver)"
        );
        std::fs::create_dir_all(shots).expect("screenshot directory");
        let port = crate::free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("profile directory");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--autoplay-policy=no-user-gesture-required".to_owned(),
            "--ignore-certificate-errors".to_owned(),
            format!("--window-size={},{}", viewport.width, viewport.height),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert("acceptInsecureCerts".into(), Value::Bool(true));
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": CHROMIUM, "args": args }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            let attempt = runtime.block_on(
                fantoccini::ClientBuilder::new(connector).capabilities(caps.clone()).connect(&url),
            );
            match attempt {
                Ok(c) => break c,
                Err(e) if Instant::now() > deadline => panic!("no browser session: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        let browser = Browser {
            runtime,
            client: Some(client),
            driver,
            _profile: profile,
            shots: shots.to_owned(),
        };
        browser.resize(viewport);
        browser
    }

    fn client(&self) -> &fantoccini::Client {
        self.client.as_ref().expect("session open")
    }

    /// Makes the page's viewport (not the window) `viewport`.
    pub fn resize(&self, viewport: Viewport) {
        let c = self.client();
        self.runtime.block_on(async {
            c.set_window_size(viewport.width, viewport.height).await.expect("window size");
            // The window includes no chrome headless, but check and correct once.
            let inner = c
                .execute("return [window.innerWidth, window.innerHeight];", vec![])
                .await
                .expect("inner size");
            let w = inner[0].as_u64().unwrap_or(viewport.width.into()) as i64;
            let h = inner[1].as_u64().unwrap_or(viewport.height.into()) as i64;
            let dw = i64::from(viewport.width) - w;
            let dh = i64::from(viewport.height) - h;
            if dw != 0 || dh != 0 {
                let width = (i64::from(viewport.width) + dw).max(100) as u32;
                let height = (i64::from(viewport.height) + dh).max(100) as u32;
                c.set_window_size(width, height).await.expect("window size");
            }
        });
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) {
        self.runtime
            .block_on(self.client().goto(url))
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// Runs `script` (a function body: `return …`) in the page.
    pub fn eval(&self, script: &str) -> Value {
        self.runtime
            .block_on(self.client().execute(script, vec![]))
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until `expression` (JavaScript) is true, or panics after `timeout` with
    /// `what` and a screenshot named after it.
    pub fn wait_until(&self, what: &str, expression: &str, timeout: Duration) -> Duration {
        let started = Instant::now();
        let script = format!("try {{ return !!({expression}); }} catch (e) {{ return false; }}");
        loop {
            if self.eval(&script) == Value::Bool(true) {
                return started.elapsed();
            }
            if started.elapsed() > timeout {
                let shot = self.screenshot(&format!("failed-{}", what.replace(' ', "-")));
                panic!("{what}: not within {timeout:?} ({expression}); page in {}", shot.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The first element `css` selects, or a panic that names the selector.
    async fn element(&self, css: &str) -> fantoccini::elements::Element {
        let found = self.client().find(fantoccini::Locator::Css(css)).await;
        found.unwrap_or_else(|e| panic!("{css}: {e}"))
    }

    /// Clicks the first element `css` selects.
    pub fn click(&self, css: &str) {
        self.runtime.block_on(async {
            let e = self.element(css).await;
            e.click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
        });
    }

    /// Types `text` into the field `css` selects, replacing what it held.
    pub fn fill(&self, css: &str, text: &str) {
        self.runtime.block_on(async {
            let e = self.element(css).await;
            e.clear().await.unwrap_or_else(|e| panic!("clear {css}: {e}"));
            e.send_keys(text).await.unwrap_or_else(|e| panic!("type into {css}: {e}"));
        });
    }

    /// Chooses `value` in the `<select>` `css` selects.
    pub fn select(&self, css: &str, value: &str) {
        self.runtime.block_on(async {
            let e = self.element(css).await;
            e.select_by_value(value)
                .await
                .unwrap_or_else(|e| panic!("select {value} in {css}: {e}"));
        });
    }

    /// Opens the web UI at `base`, logs in as `user` and waits until the system page lists
    /// servers; how long that took.
    pub fn log_in(&self, base: &str, user: &str, password: &str) -> Duration {
        let started = std::time::Instant::now();
        let long = Duration::from_secs(30);
        self.goto(&format!("{base}/"));
        self.wait_until("the login form", "document.querySelector('#login-name')", long);
        self.fill("#login-name", user);
        self.fill("#login-password", password);
        self.click("#login-submit");
        let listed = "document.querySelectorAll('tr.server').length > 0";
        self.wait_until("the system page after login", listed, long);
        started.elapsed()
    }

    /// Saves a PNG of the viewport as `<shots>/<name>.png`.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.runtime.block_on(self.client().screenshot()).expect("screenshot");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = self.runtime.block_on(c.close());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// JavaScript: whether `<video>` `css` shows a decoded picture that is not one flat colour.
pub fn video_shows_picture(css: &str) -> String {
    format!(
        "(() => {{ const v = document.querySelector('{css}'); \
         if (!v || v.readyState < 2 || v.videoWidth === 0) return false; \
         const c = document.createElement('canvas'); c.width = 64; c.height = 36; \
         const g = c.getContext('2d'); g.drawImage(v, 0, 0, 64, 36); \
         const d = g.getImageData(0, 0, 64, 36).data; let min = 255, max = 0; \
         for (let i = 0; i < d.length; i += 4) {{ min = Math.min(min, d[i]); max = Math.max(max, d[i]); }} \
         return max - min > 40; }})()"
    )
}

/// JavaScript: a fingerprint of the top-left region of `<video>` `css`, where the clip burns
/// in its frame counter.
pub fn counter_region(css: &str) -> String {
    format!(
        "return (() => {{ const v = document.querySelector('{css}'); \
         const c = document.createElement('canvas'); c.width = 160; c.height = 48; \
         const g = c.getContext('2d'); \
         g.drawImage(v, 0, 0, v.videoWidth / 4, v.videoHeight / 7.5, 0, 0, 160, 48); \
         const d = g.getImageData(0, 0, 160, 48).data; let h = 0; \
         for (let i = 0; i < d.length; i += 4) h = (h * 31 + (d[i] >> 5)) >>> 0; \
         return h; }})()"
    )
}
