//! HTTP Digest authentication (RFC 2617 without `qop`, as RTSP cameras use it), checked by a
//! server that holds the password in clear: `hive testcamera` poses as a camera that asks for
//! Digest, so recording from such cameras is tested. Hive's own RTSP server never offers
//! Digest: checking it needs a password-equivalent stored beside the users' verifiers.

use md5::{Digest as _, Md5};

/// What a Digest server asks for: its realm and a nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestChallenge {
    /// The protection space named in the challenge.
    pub realm: String,
    /// The server's nonce (unguessable, fixed for the server's life here).
    pub nonce: String,
}

impl DigestChallenge {
    /// The `WWW-Authenticate` header value of a 401.
    pub fn header(&self) -> String {
        format!("Digest realm=\"{}\", nonce=\"{}\", algorithm=MD5", self.realm, self.nonce)
    }

    /// Whether `authorization` (an `Authorization` header value) proves `user:password` for a
    /// request of `method` on `uri`: the right user, realm, nonce and URI, and the response
    /// `MD5(MD5(user:realm:password):nonce:MD5(method:uri))`. Anything malformed is `false`.
    pub fn verify(
        &self,
        authorization: &str,
        method: &str,
        uri: &str,
        user: &str,
        password: &str,
    ) -> bool {
        let Some(params) = authorization.strip_prefix("Digest ") else { return false };
        let fields = parse_params(params);
        let field = |name: &str| fields.iter().find(|(k, _)| k.eq_ignore_ascii_case(name));
        let (Some((_, got_user)), Some((_, realm)), Some((_, nonce)), Some((_, got_uri))) =
            (field("username"), field("realm"), field("nonce"), field("uri"))
        else {
            return false;
        };
        let Some((_, response)) = field("response") else { return false };
        if field("qop").is_some()
            || field("algorithm").is_some_and(|(_, a)| !a.eq_ignore_ascii_case("MD5"))
        {
            return false;
        }
        if *got_user != user || *realm != self.realm || *nonce != self.nonce || *got_uri != uri {
            return false;
        }
        let ha1 = md5_hex(&format!("{user}:{}:{password}", self.realm));
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        let expected = md5_hex(&format!("{ha1}:{}:{ha2}", self.nonce));
        // Not secret-dependent timing that matters here: the password is a test camera's.
        response.eq_ignore_ascii_case(&expected)
    }
}

/// `MD5(text)` as 32 lowercase hex digits.
fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// `key=value, key="quoted, value"` pairs; a pair that is not `key=value` is skipped.
fn parse_params(params: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = params.trim_start();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().trim_start_matches(',').trim();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let Some(end) = quoted.find('"') else { break };
            value = &quoted[..end];
            rest = &quoted[end + 1..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim();
            rest = &rest[end..];
        }
        out.push((key, value));
        rest = rest.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge() -> DigestChallenge {
        DigestChallenge { realm: "cam".to_owned(), nonce: "abc123".to_owned() }
    }

    /// A client's header, computed independently of `verify`.
    fn header(user: &str, password: &str, method: &str, uri: &str) -> String {
        let ha1 = md5_hex(&format!("{user}:cam:{password}"));
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        let response = md5_hex(&format!("{ha1}:abc123:{ha2}"));
        format!(
            "Digest username=\"{user}\", realm=\"cam\", nonce=\"abc123\", uri=\"{uri}\", \
             response=\"{response}\""
        )
    }

    #[test]
    fn md5_is_md5() {
        assert_eq!(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex("abc"), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn the_right_password_for_the_request_is_accepted_and_nothing_else() {
        let c = challenge();
        let uri = "rtsp://127.0.0.1:8554/cam1";
        let good = header("viewer", "pw", "DESCRIBE", uri);
        assert!(c.verify(&good, "DESCRIBE", uri, "viewer", "pw"));
        assert!(!c.verify(&good, "DESCRIBE", uri, "viewer", "other"), "wrong password");
        assert!(!c.verify(&good, "DESCRIBE", uri, "admin", "pw"), "another user");
        assert!(!c.verify(&good, "PLAY", uri, "viewer", "pw"), "replayed for another method");
        assert!(!c.verify(&good, "DESCRIBE", "rtsp://x/cam2", "viewer", "pw"), "another URI");
        let stale = good.replace("abc123", "old");
        assert!(!c.verify(&stale, "DESCRIBE", uri, "viewer", "pw"), "another nonce");
        assert!(!c.verify("Basic dmlld2VyOnB3", "DESCRIBE", uri, "viewer", "pw"));
    }

    #[test]
    fn malformed_headers_are_refused_without_panicking() {
        let c = challenge();
        for h in [
            "Digest",
            "Digest ",
            "Digest username",
            "Digest username=\"viewer",
            "Digest ,,,=,=\"",
            "Digest username=viewer, realm=cam, nonce=abc123, uri=x, response=",
            "Digest \u{e9}=\u{e9}",
        ] {
            assert!(!c.verify(h, "DESCRIBE", "x", "viewer", "pw"), "{h}");
        }
    }

    #[test]
    fn unquoted_values_and_spacing_variants_parse() {
        let params = parse_params("a=1,b = \"two, three\" ,  c=x");
        assert_eq!(params, vec![("a", "1"), ("b", "two, three"), ("c", "x")]);
    }
}
