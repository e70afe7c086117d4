//! Camera URLs as viewers see them: the password in `rtsp://user:password@host/...` and the
//! values of credential-like query parameters (`?password=...`) replaced by `***`.

/// What replaces a hidden credential.
const HIDDEN: &str = "***";

/// Query parameter names (lowercase substrings) whose values are credentials.
const SECRET_PARAMS: [&str; 6] = ["pass", "pwd", "token", "secret", "key", "auth"];

/// `url` with its credentials hidden.
///
/// The user part ends at the *last* `@`: a password holding a raw `/`, `?` or `@` stays
/// hidden; a path with an `@` in it may be hidden too, which costs a viewer nothing.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let rest = match rest.rsplit_once('@') {
        Some((userinfo, host_and_path)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:{HIDDEN}@{host_and_path}"),
            None => rest.to_owned(),
        },
        None => rest.to_owned(),
    };
    let (before_fragment, fragment) = match rest.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (rest.as_str(), None),
    };
    let mut out = format!("{scheme}://");
    match before_fragment.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            out.push_str(&redacted_query(query));
        }
        None => out.push_str(before_fragment),
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

fn redacted_query(query: &str) -> String {
    let params = query.split('&').map(|param| match param.split_once('=') {
        Some((name, _)) if is_secret(name) => format!("{name}={HIDDEN}"),
        _ => param.to_owned(),
    });
    params.collect::<Vec<_>>().join("&")
}

fn is_secret(param: &str) -> bool {
    let param = param.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|s| param.contains(s))
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn a_viewer_never_sees_a_camera_password() {
        let cases = [
            ("rtsp://admin:hunter2@10.0.0.5:554/stream1", "rtsp://admin:***@10.0.0.5:554/stream1"),
            ("rtsp://admin:p@ss/w?rd@cam/live", "rtsp://admin:***@cam/live"),
            (
                "http://cam/snap.cgi?user=admin&pwd=hunter2&res=hd",
                "http://cam/snap.cgi?user=admin&pwd=***&res=hd",
            ),
            ("https://cam/x?Password=hunter2#top", "https://cam/x?Password=***#top"),
            ("rtsp://10.0.0.5/stream1", "rtsp://10.0.0.5/stream1"),
            ("rtsp://admin@10.0.0.5/stream1", "rtsp://admin@10.0.0.5/stream1"),
        ];
        for (url, shown) in cases {
            assert_eq!(redacted(url), shown, "{url}");
            assert!(!redacted(url).contains("hunter2"));
        }
    }
}
