//! Masking of secret values in every piece of text that leaves the process.

use std::sync::{Arc, RwLock};

/// The set of secret values seen this run; `mask` replaces each with `********`.
#[derive(Clone, Default)]
pub struct Masker {
    secrets: Arc<RwLock<Vec<String>>>,
}

impl Masker {
    /// Register a secret value, in every form it can take in output. Everything registered
    /// was given as a secret (a secret, a sudo password, a token), so any length is masked:
    /// a 3-character sudo password is still a password, and blanking a few ordinary
    /// characters out of the output is the lesser harm. Only an empty (or all-whitespace)
    /// value is ignored — there is nothing to hide, and masking it would mask everything —
    /// and so are base64 fragments under `MIN_BASE64_FRAGMENT` characters, which carry
    /// too few of the secret's bits to give it away but match ordinary text everywhere.
    pub fn add(&self, value: &str) {
        if value.trim().is_empty() {
            return;
        }
        let mut s = self.secrets.write().unwrap_or_else(|p| p.into_inner());
        let (plain, base64) = forms(value);
        let base64 = base64
            .into_iter()
            .filter(|f| f.len() >= MIN_BASE64_FRAGMENT);
        for form in plain.into_iter().chain(base64) {
            if !form.is_empty() && !s.contains(&form) {
                s.push(form);
            }
        }
        // Longest first so a secret containing another is replaced whole.
        s.sort_by_key(|x| std::cmp::Reverse(x.len()));
    }

    /// `text` with every registered secret replaced by `********`.
    pub fn mask(&self, text: &str) -> String {
        let s = self.secrets.read().unwrap_or_else(|p| p.into_inner());
        let mut out = text.to_string();
        for secret in s.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), crate::playbook::MASK);
            }
        }
        out
    }
}

/// Shortest base64 fragment of a secret that is masked (see `Masker::add`): 3 characters
/// are 18 bits, about 2.6 bytes of the secret.
const MIN_BASE64_FRAGMENT: usize = 3;

/// The spellings of `v` that output can carry, as (textual forms, base64 fragments): raw; JSON-escaped (reports, template errors:
/// tera prints values as JSON); quoted for the shell (`sh_quote`, whole and inside its
/// quotes); percent-encoded (URL paths and queries, `%20` and `+` for a space); base64 (a
/// basic-auth header), at each of the three alignments it can have inside a longer encoded
/// string such as `user:password`.
fn forms(v: &str) -> (Vec<String>, Vec<String>) {
    use base64::Engine;
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let mut out = vec![v.to_string()];
    if let Ok(json) = serde_json::to_string(v) {
        out.push(json.trim_matches('"').to_string());
    }
    // Rust's `{:?}` (error values formatted with Debug): escapes like JSON, but `\u{…}`.
    let debug = format!("{v:?}");
    out.push(debug.trim_matches('"').to_string());
    let quoted = crate::transport::sh_quote(v);
    out.push(v.replace('\'', "'\\''"));
    out.push(quoted);
    // RFC 3986 unreserved characters stay as they are (url, reqwest); everything else %XX.
    const COMPONENT: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    // application/x-www-form-urlencoded: `*-._` kept, space as `+`.
    const FORM: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
        .remove(b'*')
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b' ');
    // The WHATWG URL path-segment and userinfo sets (`Url::path_segments_mut`, `user:pass@`).
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'`')
        .add(b'{')
        .add(b'}')
        .add(b'/')
        .add(b'%')
        .add(b'\\');
    const USERINFO: &percent_encoding::AsciiSet = &SEGMENT
        .add(b':')
        .add(b';')
        .add(b'=')
        .add(b'@')
        .add(b'[')
        .add(b']')
        .add(b'^')
        .add(b'|');
    out.push(utf8_percent_encode(v, NON_ALPHANUMERIC).to_string());
    out.push(utf8_percent_encode(v, SEGMENT).to_string());
    out.push(utf8_percent_encode(v, USERINFO).to_string());
    out.push(utf8_percent_encode(v, COMPONENT).to_string());
    out.push(utf8_percent_encode(v, FORM).to_string().replace(' ', "+"));
    // base64 with k bytes before the secret: keep only the characters made of the secret's
    // bits alone (6-bit groups fully inside bytes k..k+n).
    let bytes = v.as_bytes();
    let mut b64 = Vec::new();
    for k in 0..3usize {
        let mut buf = vec![0u8; k];
        buf.extend_from_slice(bytes);
        let enc = base64::engine::general_purpose::STANDARD.encode(&buf);
        let first = (8 * k).div_ceil(6);
        let last = (8 * (k + bytes.len())) / 6; // exclusive
        if let Some(mid) = enc.get(first..last) {
            b64.push(mid.to_string());
        }
    }
    (out, b64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_longest_first() {
        let m = Masker::default();
        m.add("abcd");
        m.add("abcdefgh");
        assert_eq!(m.mask("x abcdefgh y abcd"), "x ******** y ********");
        // Nothing to hide: an empty secret must not mask everything.
        m.add("");
        m.add("  ");
        assert_eq!(m.mask("a b"), "a b");
    }

    /// Defect: secrets shorter than 4 characters were never registered, so a 3-character
    /// sudo password (or a 1-character one) was printed in clear wherever it appeared.
    #[test]
    fn short_secret_was_not_masked() {
        use base64::Engine;
        for secret in ["abc", "x9", "7"] {
            let m = Masker::default();
            m.add(secret);
            let line = format!("sudo: password {secret} rejected");
            assert_eq!(
                m.mask(&line).matches(crate::playbook::MASK).count(),
                1,
                "{secret}"
            );
            assert!(!m.mask(&line).contains(&format!(" {secret} ")), "{secret}");
            let json = serde_json::json!({ "error": format!("pw={secret}") }).to_string();
            assert!(!m.mask(&json).contains(secret), "{secret}: {json}");
        }
        // Three characters: even the basic-auth header of `user:abc` hides it (whole base64
        // groups and the 3-character fragments at every alignment).
        let m = Masker::default();
        m.add("abc");
        for user in ["", "u", "us", "usr"] {
            let header = base64::engine::general_purpose::STANDARD.encode(format!("{user}:abc"));
            assert!(
                m.mask(&header).contains(crate::playbook::MASK),
                "{user}:abc → {header}"
            );
        }
    }

    /// Each form is produced by the tool that puts it in output (serde_json, sh_quote, the
    /// url crate through reqwest, base64 of a basic-auth pair), never written out by hand.
    #[test]
    fn masks_every_encoded_form() {
        use base64::Engine;
        let secret = "p4ss \"w'rd\\ & +/?=";
        let m = Masker::default();
        m.add(secret);
        let json = serde_json::json!({ "error": secret }).to_string();
        let debug = format!("{:?}", format!("{secret}\u{1}"));
        let shell = crate::transport::sh_quote(secret);
        let mut url = reqwest::Url::parse("http://h/x").expect("url");
        url.path_segments_mut().expect("base").push(secret);
        url.query_pairs_mut().append_pair("token", secret);
        url.set_password(Some(secret)).expect("password");
        for user in ["admin", "ab", "a", ""] {
            let basic =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
            for text in [json.as_str(), shell.as_str(), url.as_str(), basic.as_str()] {
                let masked = m.mask(text);
                assert!(masked.contains(crate::playbook::MASK), "{text} → {masked}");
            }
            let masked = m.mask(&basic);
            let left = masked.replace(crate::playbook::MASK, "");
            assert!(
                left.len() <= 8,
                "too much of the basic-auth header left: {masked}"
            );
        }
        for text in [json, shell, url.to_string(), debug] {
            let masked = m.mask(&text);
            assert!(
                !masked.contains("p4ss") && !masked.contains("rd"),
                "{text} → {masked}"
            );
        }
    }
}
