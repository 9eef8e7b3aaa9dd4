//! A string that must never be printed.
//!
//! Tokens, the client secret, the PKCE verifier and the webhook key all travel
//! through structs that get logged with `{:?}` sooner or later. Wrapping them
//! here makes the safe thing the default: Debug and Display print a fixed
//! placeholder, and reading the value needs an explicit `expose_secret()`.
//! Serde is transparent because the token set is persisted as JSON in the
//! tenant's secret, where the real value is the point.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What Debug and Display print instead of a secret.
pub const REDACTED: &str = "[REDACTED]";

/// A secret string: redacted in Debug/Display, serialised as the plain value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself; call sites are the places to audit.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Replaces every occurrence of `secret` in `text` (used on error messages
/// that quote a server's response, in case it echoes what we sent).
pub(crate) fn scrub(text: &str, secret: &SecretString) -> String {
    if secret.is_empty() {
        return text.to_owned();
    }
    text.replace(secret.expose_secret(), REDACTED)
}

/// At most `max_chars` characters of a server's `text` for an error message,
/// every secret removed. The whole text is scrubbed *before* it is cut: a
/// secret cut in half no longer matches and would leak its first half (a
/// Xero access token, a JWT, is longer than any excerpt). Anything shaped
/// like a JWT goes too, known or not: a body may echo a token other than
/// the one this request sent (another tenant's, a proxy's).
pub(crate) fn scrubbed_excerpt(text: &str, secrets: &[&SecretString], max_chars: usize) -> String {
    // Longest first, so a secret containing another is removed whole.
    let mut secrets = secrets.to_vec();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.expose_secret().len()));
    let mut clean = text.to_owned();
    for secret in secrets {
        clean = scrub(&clean, secret);
    }
    // After the known secrets, so one that merely contains a JWT goes whole.
    let clean = scrub_jwts(&clean);
    // `chars` keeps the cut on a character boundary.
    clean.chars().take(max_chars).collect()
}

/// The shortest header, payload and signature taken for a JWT's: far below
/// any real token's (a header alone is 20+), far above the parts of a
/// version number, a host name or an e-mail address.
const JWT_MIN_SEGMENT: usize = 10;

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// `text` with every JWT-shaped run (`eyJ…` `.` `…` `.` `…`, three base64url
/// segments of at least [`JWT_MIN_SEGMENT`]) replaced by [`REDACTED`].
/// Hand-written rather than a regex: the crate has no regex dependency.
fn scrub_jwts(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = text[from..].find("eyJ") {
        let start = from + found;
        match jwt_end(bytes, start) {
            Some(end) => {
                out.push_str(&text[copied..start]);
                out.push_str(REDACTED);
                copied = end;
                from = end;
            }
            // A later `eyJ` in the same run has the same dots after it and
            // a shorter first segment, so it cannot match either: skipping
            // the run keeps this linear on hostile input.
            None => from = start + base64url_run(bytes, start),
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// Length of the run of base64url bytes at `at`.
fn base64url_run(bytes: &[u8], at: usize) -> usize {
    bytes
        .get(at..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| is_base64url(**b))
        .count()
}

/// Where the JWT starting at `start` ends, if one does. Every byte it
/// accepts is ASCII, so the ends are character boundaries of the text.
fn jwt_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut end = start;
    for segment in 0..3 {
        if segment > 0 {
            if bytes.get(end) != Some(&b'.') {
                return None;
            }
            end += 1;
        }
        let len = base64url_run(bytes, end);
        if len < JWT_MIN_SEGMENT {
            return None;
        }
        end += len;
    }
    Some(end)
}

/// A JWT-shaped access token (longer than any error excerpt) and whether
/// `text` shows any piece of it, for tests of scrubbing.
#[cfg(test)]
pub(crate) mod testing {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    pub(crate) fn jwt_like() -> String {
        let header =
            r#"{"alg":"RS256","kid":"1CAF8E66772D6DC028D6726FD0261581570EFC19","typ":"JWT"}"#;
        let payload = r#"{"nbf":1700000000,"exp":1700001800,"iss":"https://identity.xero.com","aud":"https://identity.xero.com/resources","client_id":"ABCDEF0123456789","sub":"a3a4dbafh3495a808ed7a7b964388f53","auth_time":1699999990,"xero_userid":"1945393b-6eb7-4143-b083-7ab26cd7690b","global_session_id":"ac2202575e824af3a181c50fcaa65c3c","jti":"4e7747cec0ce54a1f6a5cd6a1b3c2b8a","authentication_event_id":"d0ddcf81-f942-4f4d-b3c7-f98045204db4","scope":["email","profile","openid","accounting.invoices.read","offline_access"]}"#;
        let signature: Vec<u8> = (0u8..=255).collect();
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    /// Whether `text` holds any 12-character piece of `secret`.
    pub(crate) fn shows_part_of(text: &str, secret: &str) -> bool {
        let chars: Vec<char> = secret.chars().collect();
        chars
            .windows(12.min(chars.len()))
            .any(|w| text.contains(&w.iter().collect::<String>()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact_but_serde_keeps_value() {
        let s = SecretString::new("hunter2");
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(
            serde_json::to_string(&s).ok().as_deref(),
            Some("\"hunter2\"")
        );
        let back: SecretString = serde_json::from_str("\"hunter2\"").unwrap_or_default();
        assert_eq!(back.expose_secret(), "hunter2");
    }

    #[test]
    fn excerpt_scrubs_before_cutting() {
        let jwt = testing::jwt_like();
        assert!(jwt.len() > 500, "{}", jwt.len());
        let token = SecretString::new(jwt.clone());
        let refresh =
            SecretString::new("b1c4f0e2d9a8476c5e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d");
        let body = format!("échec: {} then {}", jwt, refresh.expose_secret());
        let cut = scrubbed_excerpt(&body, &[&refresh, &token], 40);
        assert_eq!(cut, "échec: [REDACTED] then [REDACTED]");
        for max in [10, 100, 300, 500] {
            let cut = scrubbed_excerpt(&body, &[&token, &refresh], max);
            assert!(cut.chars().count() <= max);
            assert!(!testing::shows_part_of(&cut, &jwt), "token piece at {max}");
            assert!(
                !testing::shows_part_of(&cut, refresh.expose_secret()),
                "refresh token piece at {max}"
            );
        }
        // A secret inside a longer one: the longer goes whole.
        let inner = SecretString::new("abcdef");
        let outer = SecretString::new("xxabcdefyy");
        assert_eq!(
            scrubbed_excerpt("t xxabcdefyy", &[&inner, &outer], 100),
            "t [REDACTED]"
        );
    }

    #[test]
    fn an_unknown_jwt_is_scrubbed_before_cutting() {
        // Not one of the secrets passed: echoed by Xero or a proxy all the same.
        let jwt = testing::jwt_like();
        let other = SecretString::new("tok-123");
        let body = format!("échec: Bearer {jwt}, then \"{jwt}\" and tok-123");
        let whole = scrubbed_excerpt(&body, &[&other], usize::MAX);
        // `assert!`, not `assert_eq!`: a failure must not print the token.
        assert!(
            whole == "échec: Bearer [REDACTED], then \"[REDACTED]\" and [REDACTED]",
            "the token is not redacted in place"
        );
        for max in [10, 20, 40, 100, 300, 500] {
            let cut = scrubbed_excerpt(&body, &[], max);
            assert!(cut.chars().count() <= max);
            assert!(!testing::shows_part_of(&cut, &jwt), "token piece at {max}");
        }
        // Glued to what precedes it, it still goes.
        let cut = scrubbed_excerpt(&format!("token={jwt}&state=x"), &[], usize::MAX);
        assert!(
            cut == "token=[REDACTED]&state=x",
            "a glued token is not redacted in place"
        );
    }

    #[test]
    fn ordinary_text_with_dots_is_not_taken_for_a_jwt() {
        for text in [
            "v1.2.3",
            "contact jane.doe@example.co.uk about it.",
            "see https://api.xero.com/api.xro/2.0/Invoices?page=2.",
            "a.b.c and aaaaaaaaaaaa.bbbbbbbbbbbb.cccccccccccc",
            // JWT-like, but segments too short, or only two of them.
            "eyJhbGci.eyJzdWIi.c2ln",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0",
            "eyJ",
        ] {
            assert_eq!(scrubbed_excerpt(text, &[], usize::MAX), text);
        }
    }

    #[test]
    fn scrub_removes_secret() {
        let s = SecretString::new("tok123");
        assert_eq!(scrub("bad token tok123!", &s), "bad token [REDACTED]!");
        assert_eq!(scrub("nothing", &SecretString::default()), "nothing");
    }
}
