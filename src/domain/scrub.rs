//! The one scrubber: removes a connection's secrets, and the forms they travel
//! in (percent-encoded in a query, form-encoded, base64 as in HTTP Basic), from
//! any text that is stored, returned or logged (a provider that echoes the
//! credential it received in its error body, say).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Secrets shorter than this are not scrubbed (they would match everywhere).
const MIN_SECRET_LEN: usize = 6;

/// Removes known secrets from text.
#[derive(Clone, Default)]
pub struct Scrubber {
    /// Every form of every secret, longest first.
    forms: Vec<String>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber")
            .field("forms", &self.forms.len())
            .finish()
    }
}

impl Scrubber {
    /// A scrubber for `secrets` (and their encodings).
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut s = Scrubber::default();
        for secret in secrets {
            s.add(secret);
        }
        s
    }

    /// Adds a secret and the forms it travels in.
    pub fn add(&mut self, secret: &str) {
        if secret.len() < MIN_SECRET_LEN {
            return;
        }
        let forms = [
            secret.to_owned(),
            utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string(),
            url::form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
            STANDARD.encode(secret),
            URL_SAFE_NO_PAD.encode(secret),
        ];
        for form in forms {
            if !self.forms.contains(&form) {
                self.forms.push(form);
            }
        }
        self.forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    }

    /// Adds the HTTP Basic form of a user name and password.
    pub fn add_basic(&mut self, user: &str, password: &str) {
        let pair = format!("{user}:{password}");
        self.add(&pair);
        if !password.is_empty() {
            self.add(password);
        }
    }

    /// Whether it knows no secret.
    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// `text` with every known secret replaced by [`REDACTED`].
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for form in &self.forms {
            if out.contains(form.as_str()) {
                out = out.replace(form.as_str(), REDACTED);
            }
        }
        out
    }

    /// Scrubs with both scrubbers' secrets.
    pub fn merged(mut self, other: &Scrubber) -> Scrubber {
        for form in &other.forms {
            if !self.forms.contains(form) {
                self.forms.push(form.clone());
            }
        }
        self.forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_their_encodings_are_removed() {
        let mut s = Scrubber::new(["ghp_s3cr3t/+value", "k"]);
        s.add_basic("me@example.com", "pa ss:word");
        let basic = STANDARD.encode("me@example.com:pa ss:word");
        let text = format!(
            "401: bad token ghp_s3cr3t/+value (sent ?key=ghp_s3cr3t%2F%2Bvalue or ghp_s3cr3t%2F%2Bvalue) Authorization: Basic {basic}; password pa ss:word; k stays"
        );
        let clean = s.scrub(&text);
        for leaked in ["ghp_s3cr3t", "%2F%2Bvalue", &basic, "pa ss:word"] {
            assert!(!clean.contains(leaked), "{leaked} in {clean}");
        }
        assert!(clean.contains("k stays"), "{clean}");
        assert!(clean.contains(REDACTED));
        assert_eq!(Scrubber::default().scrub("nothing"), "nothing");
    }
}
