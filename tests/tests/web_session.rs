//! The web UI's session against hostile requests: a cookie alone changes nothing (CSRF), a
//! request from another origin is refused even with the token, a forged cookie is nobody, a
//! changed password or a logout ends the session, and a page's failed login brings no browser
//! password dialog. The event stream and the page itself are served as the UI expects.
//! Another site's page cannot use the browser's cached Basic credentials either, a login body
//! is bounded before any check, and an event stream ends with its session.

use hive_tests::{discovery_port, Hive, Spec, OWNER_PASSWORD};
use serde_json::{json, Value};
use std::io::Read;
use std::time::Duration;

/// One request: status, headers asked for, JSON body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&Value>) -> Answer {
    let mut req = ureq::request(method, url).timeout(Duration::from_secs(30));
    for (name, value) in headers {
        req = req.set(name, value);
    }
    let result = match body {
        Some(b) => req.set("Content-Type", "application/json").send_string(&b.to_string()),
        None => req.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = response.status();
    let headers = ["set-cookie", "www-authenticate", "content-security-policy", "content-type"]
        .iter()
        .filter_map(|n| Some((n.to_string(), response.header(n)?.to_owned())))
        .collect();
    let text = response.into_string().unwrap_or_default();
    Answer { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
}

/// Logs in: the cookie header to send and the CSRF token.
fn log_in(base: &str, name: &str, password: &str) -> (String, String) {
    let login = json!({ "name": name, "password": password });
    let a = send("POST", &format!("{base}/api/session"), &[], Some(&login));
    assert_eq!(a.status, 200, "{}", a.body);
    let cookie = a.header("set-cookie").expect("a session cookie").to_owned();
    let pair = cookie.split(';').next().unwrap().to_owned();
    (pair, a.body["csrf"].as_str().expect("a CSRF token").to_owned())
}

#[test]
fn a_session_cookie_alone_changes_nothing_and_ends_with_logout_or_a_new_password() {
    let h = Hive::start(Spec::new("a", "Web", "secret-web", discovery_port()));
    let base = h.url();
    let host = base.trim_start_matches("http://").to_owned();
    let cameras = format!("{base}/api/cameras");
    let camera = json!({ "name": "door", "url": "rtsp://127.0.0.1/door" });

    // A page's failed login: 401 in words, without the Basic challenge that would bring the
    // browser's own password dialog.
    let wrong = json!({ "name": "admin", "password": "guess" });
    let a = send("POST", &format!("{base}/api/session"), &[], Some(&wrong));
    assert_eq!(a.status, 401);
    assert_eq!(a.header("www-authenticate"), None);
    assert!(a.body["message"].as_str().unwrap().contains("wrong"), "{}", a.body);
    // A script without credentials gets no challenge either; curl and the CLI still do.
    let a = send("GET", &cameras, &[("Sec-Fetch-Mode", "cors")], None);
    assert_eq!((a.status, a.header("www-authenticate")), (401, None));
    let a = send("GET", &cameras, &[], None);
    assert_eq!((a.status, a.header("www-authenticate")), (401, Some("Basic realm=\"hive\"")));

    let (cookie, csrf) = log_in(&base, "admin", OWNER_PASSWORD);
    let set = send(
        "POST",
        &format!("{base}/api/session"),
        &[],
        Some(&json!({ "name": "admin", "password": OWNER_PASSWORD })),
    );
    let flags = set.header("set-cookie").unwrap();
    for flag in ["__Host-hive_session=", "HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(flags.contains(flag), "{flags}");
    }
    let a = send("GET", &format!("{base}/api/session"), &[("Cookie", &cookie)], None);
    assert_eq!(
        (a.status, a.body["role"].as_str(), a.body["csrf"].as_str()),
        (200, Some("owner"), Some(csrf.as_str()))
    );

    // CSRF: another site's form or script can make the browser send the cookie, never the
    // token. Nothing is created.
    let a = send("POST", &cameras, &[("Cookie", &cookie)], Some(&camera));
    assert_eq!((a.status, a.body["error"].as_str()), (403, Some("csrf")), "{}", a.body);
    let a =
        send("POST", &cameras, &[("Cookie", &cookie), ("X-CSRF-Token", "forged")], Some(&camera));
    assert_eq!(a.status, 403);
    let evil = [
        ("Cookie", cookie.as_str()),
        ("X-CSRF-Token", csrf.as_str()),
        ("Origin", "https://evil.example"),
    ];
    let a = send("POST", &cameras, &evil, Some(&camera));
    assert_eq!((a.status, a.body["error"].as_str()), (403, Some("cross_origin")), "{}", a.body);
    assert_eq!(h.api().get("/api/cameras").1, json!([]), "a refused request changed nothing");
    // From the page itself: created.
    let origin = format!("http://{host}");
    let own =
        [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str()), ("Origin", origin.as_str())];
    let a = send("POST", &cameras, &own, Some(&camera));
    assert_eq!(a.status, 201, "{}", a.body);

    // A forged or stale cookie is nobody.
    let a = send(
        "GET",
        &cameras,
        &[("Cookie", "__Host-hive_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")],
        None,
    );
    assert_eq!((a.status, a.header("www-authenticate")), (401, None));

    // The event stream: the system first, then the cameras.
    let mut stream = events(&base, &cookie);
    let seen = read_until(&mut stream, "event: cameras").expect("the stream ended early");
    let system_at = seen.find("event: system").expect("a system event");
    assert!(system_at < seen.find("event: cameras").unwrap(), "{seen}");
    assert!(seen.contains("\"door\""), "the cameras event lists the camera: {seen}");
    drop(stream);

    // Cross-site WebSocket hijacking: another site's page opening the video socket with the
    // user's cookie is refused before anything is streamed.
    let id = h.api().get("/api/cameras").1[0]["id"].as_str().unwrap().to_owned();
    let hijack = [
        ("Cookie", cookie.as_str()),
        ("Origin", "https://evil.example"),
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let a = send("GET", &format!("{base}/api/cameras/{id}/video.ws"), &hijack, None);
    assert_eq!((a.status, a.body["error"].as_str()), (403, Some("cross_origin")), "{}", a.body);

    // A new password ends the user's sessions at their next request.
    let (viewer_cookie, _) = {
        let (status, _) = h.api().post(
            "/api/users",
            &json!({ "name": "guard", "password": "guard-password-1", "role": "viewer" }),
        );
        assert_eq!(status, 201);
        log_in(&base, "guard", "guard-password-1")
    };
    let a = send("GET", &cameras, &[("Cookie", &viewer_cookie)], None);
    assert_eq!(a.status, 200);
    let id = h
        .api()
        .get("/api/users")
        .1
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "guard")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) =
        h.api().patch(&format!("/api/users/{id}"), &json!({ "password": "guard-password-2" }));
    assert_eq!(status, 200);
    let a = send("GET", &cameras, &[("Cookie", &viewer_cookie)], None);
    assert_eq!(a.status, 401, "the old password's session ended: {}", a.body);

    // Logout ends the session.
    let a = send("DELETE", &format!("{base}/api/session"), &own, None);
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.header("set-cookie").unwrap().contains("Max-Age=0"));
    let a = send("GET", &cameras, &[("Cookie", &cookie)], None);
    assert_eq!(a.status, 401);

    // The page and the API's document are public; the page may load nothing from elsewhere.
    let page = send("GET", &format!("{base}/"), &[], None);
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    assert!(page.header("content-security-policy").unwrap().contains("default-src 'self'"));
    let doc = send("GET", &format!("{base}/api/openapi.json"), &[], None);
    assert_eq!(doc.status, 200);
    assert!(doc.body["paths"]["/api/session"]["post"].is_object(), "the login is documented");
}

/// The event stream of the session of `cookie`.
fn events(base: &str, cookie: &str) -> impl Read {
    ureq::get(&format!("{base}/api/events"))
        .set("Cookie", cookie)
        .timeout(Duration::from_secs(30))
        .call()
        .expect("an event stream")
        .into_reader()
}

/// Reads an event stream until `until` appears in it; `None` if it ended first.
fn read_until(stream: &mut impl Read, until: &str) -> Option<String> {
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains(until) {
        let n = stream.read(&mut buf).expect("the stream neither ends nor hangs");
        if n == 0 {
            return None;
        }
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    Some(seen)
}

#[test]
fn another_sites_page_cannot_use_cached_basic_credentials_and_streams_end_with_their_session() {
    use base64::Engine;
    let h = Hive::start(Spec::new("a", "Web", "secret-web", discovery_port()));
    let base = h.url();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{OWNER_PASSWORD}"))
    );
    let camera = json!({ "name": "door", "url": "rtsp://127.0.0.1/door" });
    let cameras = format!("{base}/api/cameras");

    // The owner once typed the password into the browser's own dialog; the browser now adds
    // it to requests other sites' pages start. A form posted from evil.example (no body
    // needed) to replace the system secret, and a script's request marked cross-site, are
    // refused before any handler runs.
    let secret = format!("{base}/api/system/secret");
    let forged = [("Authorization", basic.as_str()), ("Origin", "https://evil.example")];
    let a = send("POST", &secret, &forged, None);
    assert_eq!((a.status, a.body["error"].as_str()), (403, Some("cross_origin")), "{}", a.body);
    let cross_site = [("Authorization", basic.as_str()), ("Sec-Fetch-Site", "cross-site")];
    let a = send("POST", &cameras, &cross_site, Some(&camera));
    assert_eq!((a.status, a.body["error"].as_str()), (403, Some("cross_origin")), "{}", a.body);
    let sandboxed = [("Authorization", basic.as_str()), ("Origin", "null")];
    let a = send("POST", &cameras, &sandboxed, Some(&camera));
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(h.api().get("/api/cameras").1, json!([]), "a refused request changed nothing");
    // The CLI and scripts send no Origin: served.
    let a = send("POST", &cameras, &[("Authorization", basic.as_str())], Some(&camera));
    assert_eq!(a.status, 201, "{}", a.body);

    // A login body is read only up to what a login needs, before any password is checked.
    let huge = json!({ "name": "admin", "password": "x".repeat(64 * 1024) });
    let a = send("POST", &format!("{base}/api/session"), &[], Some(&huge));
    assert_eq!(
        (a.status, a.body["error"].as_str()),
        (413, Some("payload_too_large")),
        "{}",
        a.body
    );

    // An event stream ends when its session does, rather than going on showing the system
    // (and camera addresses) to whoever was logged out.
    let (cookie, csrf) = log_in(&base, "admin", OWNER_PASSWORD);
    let mut stream = events(&base, &cookie);
    read_until(&mut stream, "event: cameras").expect("the first events");
    let host = base.trim_start_matches("http://").to_owned();
    let origin = format!("http://{host}");
    let own =
        [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str()), ("Origin", origin.as_str())];
    let a = send("DELETE", &format!("{base}/api/session"), &own, None);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(read_until(&mut stream, "never sent"), None, "the stream ended with the session");
}
