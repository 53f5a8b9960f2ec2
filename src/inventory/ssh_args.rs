//! `ansible_ssh_common_args` / `ansible_ssh_extra_args`: the `ssh` command-line options an
//! Ansible inventory passes, read into `ssh -o Key=Value` options that promfleet hands to
//! `ssh -G` (transport/ssh_config.rs), so OpenSSH itself decides what they mean.
//!
//! Owns: which options are accepted — those whose effect promfleet's SSH client implements
//! (the `ssh -G` answers it reads) — and the refusal of everything else, naming the option.
//! Must not touch: how the options combine with ~/.ssh/config (that is `ssh -G`'s job).

/// Options accepted after `-o`, in OpenSSH's spelling (matched case-insensitively, as ssh).
const SUPPORTED: &[&str] = &[
    "ConnectTimeout",
    "GlobalKnownHostsFile",
    "HashKnownHosts",
    "HostKeyAlias",
    "HostName",
    "IdentitiesOnly",
    "IdentityFile",
    "Port",
    "ProxyJump",
    "ServerAliveCountMax",
    "ServerAliveInterval",
    "StrictHostKeyChecking",
    "User",
    "UserKnownHostsFile",
];

/// Why an option is refused, for the ones people write most.
fn why_refused(key: &str) -> &'static str {
    match key.to_ascii_lowercase().as_str() {
        "proxycommand" => {
            "promfleet does not run proxy commands: use `-o ProxyJump=[user@]bastion[:port]`"
        }
        "controlmaster" | "controlpersist" | "controlpath" => {
            "promfleet keeps one connection per host for the whole run already: drop it"
        }
        _ => {
            "promfleet's SSH client does not implement it: drop it, or use ssh's config file for options ssh alone needs"
        }
    }
}

/// The `-o` options of one variable's value, as (OpenSSH's key spelling, value), in order.
/// `-o Key=Value`, `-oKey=Value`, `-o "Key Value"` and `-J hop` (= `-o ProxyJump=hop`);
/// anything else is an error saying what and why.
pub(crate) fn parse(args: &str) -> Result<Vec<(String, String)>, String> {
    if args.contains("{{") || args.contains("{%") {
        return Err(
            "it is a Jinja template, which promfleet does not evaluate: write the values out"
                .to_owned(),
        );
    }
    let words = shlex::split(args)
        .ok_or_else(|| format!("cannot split `{args}` as a shell would (an unclosed quote?)"))?;
    let mut out = Vec::new();
    let mut words = words.into_iter();
    while let Some(w) = words.next() {
        let option = if w == "-o" || w == "-J" {
            let Some(value) = words.next() else {
                return Err(format!("`{w}` needs a value"));
            };
            if w == "-J" {
                format!("ProxyJump={value}")
            } else {
                value
            }
        } else if let Some(rest) = w.strip_prefix("-o") {
            rest.to_owned()
        } else if let Some(rest) = w.strip_prefix("-J") {
            format!("ProxyJump={rest}")
        } else if w.starts_with('-') {
            return Err(format!(
                "the ssh flag `{w}` is not supported (only `-o Key=Value` and `-J`)"
            ));
        } else {
            return Err(format!(
                "`{w}` is not an ssh option (only `-o Key=Value` and `-J`)"
            ));
        };
        out.push(key_value(&option)?);
    }
    Ok(out)
}

/// `Key=Value` or `Key Value` (ssh accepts both after `-o`), the key checked and spelled as
/// OpenSSH spells it.
fn key_value(option: &str) -> Result<(String, String), String> {
    let option = option.trim();
    let split = option
        .find(|c: char| c == '=' || c.is_whitespace())
        .ok_or_else(|| format!("`-o {option}` has no value (write `-o Key=Value`)"))?;
    let (key, value) = option.split_at(split);
    let value = value
        .trim_start_matches(|c: char| c.is_whitespace())
        .trim_start_matches('=')
        .trim();
    let Some(known) = SUPPORTED.iter().find(|k| k.eq_ignore_ascii_case(key)) else {
        return Err(format!("`-o {key}` is not supported: {}", why_refused(key)));
    };
    if value.is_empty() {
        return Err(format!("`-o {key}` has no value"));
    }
    Ok(((*known).to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn options_are_read_as_ssh_reads_them() {
        let got = parse(
            "-o StrictHostKeyChecking=no -oUserKnownHostsFile=/dev/null -o 'port 2222' -J a@b:22 \
             -o proxyjump=c",
        )
        .expect("parse");
        let want = [
            ("StrictHostKeyChecking", "no"),
            ("UserKnownHostsFile", "/dev/null"),
            ("Port", "2222"),
            ("ProxyJump", "a@b:22"),
            ("ProxyJump", "c"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(parse("").expect("empty"), Vec::new());
    }

    #[test]
    fn other_options_are_refused_with_the_reason() {
        let cases = [
            ("-o ProxyCommand='ssh -W %h:%p bastion'", "ProxyJump"),
            ("-o ControlMaster=auto", "one connection per host"),
            ("-A", "the ssh flag `-A` is not supported"),
            ("-o ForwardAgent=yes", "`-o ForwardAgent` is not supported"),
            ("-o", "needs a value"),
            ("-o Port", "has no value"),
            ("-o 'Port=2222", "unclosed quote"),
            ("bastion", "not an ssh option"),
            ("-o ProxyJump={{ bastion }}", "Jinja template"),
        ];
        for (args, want) in cases {
            let e = parse(args).expect_err(args);
            assert!(e.contains(want), "{args}: {e}");
        }
    }
}
