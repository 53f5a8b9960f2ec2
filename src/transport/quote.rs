//! Quoting for the remote POSIX shell: every value that reaches a command line goes through here.

/// Quote one word for `/bin/sh`. Never fails: strings with NUL bytes are rejected earlier
/// (inventory names are validated), and a NUL is dropped here rather than passed to the shell.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
    {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars().filter(|c| *c != '\0') {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Quote a remote path, expanding a leading `~/` to `$HOME` as the shell would have.
pub fn remote_path(p: &str) -> String {
    if p == "~" {
        "\"$HOME\"".to_string()
    } else if let Some(rest) = p.strip_prefix("~/") {
        format!("\"$HOME\"/{}", sh_quote(rest))
    } else {
        sh_quote(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_metacharacters() {
        assert_eq!(sh_quote("plain-name_1.2"), "plain-name_1.2");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("x;rm -rf /"), "'x;rm -rf /'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        assert_eq!(sh_quote("$(id)"), "'$(id)'");
        assert_eq!(sh_quote(""), "''");
    }

    #[test]
    fn expands_home() {
        assert_eq!(
            remote_path("~/exporter-deploy"),
            "\"$HOME\"/exporter-deploy"
        );
        assert_eq!(remote_path("~/a b"), "\"$HOME\"/'a b'");
        assert_eq!(remote_path("/etc/x"), "/etc/x");
    }
}
