//! The PLAY RECAP: one line per host with counts, then the failures' one-line causes — each
//! host's when there are few (or with `-v`), else grouped by cause with the first hosts of
//! each (`--output json` always has every host's).

use std::fmt::Write;

use super::{HostReport, HostStatus, Masker, RunReport};

/// Up to this many failures, each is printed on its own line.
const LIST_ALL_UP_TO: usize = 10;
/// Hosts named per cause in the grouped form.
const HOSTS_PER_CAUSE: usize = 5;

/// `verbose` > 0 lists every failure, however many.
pub fn recap(run: &RunReport, masker: &Masker, verbose: u8) -> String {
    let mut s = String::new();
    let title = if run.check {
        "PLAY RECAP (check mode: nothing was changed) "
    } else {
        "PLAY RECAP "
    };
    let _ = writeln!(s, "\n{title:*<80}");
    let width = run
        .hosts
        .iter()
        .map(|h| h.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    for h in &run.hosts {
        let unreachable = usize::from(h.status == HostStatus::Unreachable);
        let mut note = match h.status {
            HostStatus::NotRun => "  (not run)".to_string(),
            _ => String::new(),
        };
        if let Some(g) = &h.gate {
            note.push_str(if g.passed {
                "  gate=passed"
            } else {
                "  gate=FAILED"
            });
        }
        if h.rolled_back {
            note.push_str("  rolled back");
        }
        let _ = writeln!(
            s,
            "{:<width$} : ok={:<4} changed={:<4} unreachable={:<4} failed={:<4} skipped={:<4} {:>6.1}s{note}",
            h.host,
            h.ok,
            h.changed,
            unreachable,
            h.failed,
            h.skipped,
            h.duration_ms as f64 / 1000.0,
        );
    }
    let failures: Vec<&HostReport> = run.hosts.iter().filter(|h| h.status.is_failure()).collect();
    if !failures.is_empty() {
        let _ = writeln!(s);
        if verbose > 0 || failures.len() <= LIST_ALL_UP_TO {
            for h in failures {
                let _ = writeln!(s, "{} {} ({}): {}", kind(h), h.host, h.group, cause(h));
            }
        } else {
            summarise(&mut s, &failures, masker);
        }
    }
    if let Some(why) = &run.halted {
        let _ = writeln!(s, "\nHALTED: {why}");
    }
    if run.interrupted {
        let _ = writeln!(s, "\nINTERRUPTED: hosts not started are marked (not run)");
    }
    let _ = writeln!(
        s,
        "\n{} hosts: {} ok, {} changed, {} failed, {} unreachable, {} not run in {:.1}s",
        run.hosts.len(),
        run.count(HostStatus::Ok),
        run.count(HostStatus::Changed),
        run.count(HostStatus::Failed),
        run.count(HostStatus::Unreachable),
        run.count(HostStatus::NotRun),
        run.duration_ms as f64 / 1000.0
    );
    masker.mask(&s)
}

fn kind(h: &HostReport) -> &'static str {
    if h.status == HostStatus::Unreachable {
        "UNREACHABLE"
    } else {
        "FAILED"
    }
}

fn cause(h: &HostReport) -> &str {
    h.error.as_deref().unwrap_or("unknown error")
}

/// Failures grouped by kind and cause (most hosts first, then in run order), each with its
/// count and first `HOSTS_PER_CAUSE` hosts.
fn summarise(s: &mut String, failures: &[&HostReport], masker: &Masker) {
    let mut groups: Vec<(&str, String, Vec<&HostReport>)> = Vec::new();
    for &h in failures {
        let key = generic_cause(h, masker);
        match groups
            .iter_mut()
            .find(|(k, c, _)| *k == kind(h) && *c == key)
        {
            Some((_, _, hosts)) => hosts.push(h),
            None => groups.push((kind(h), key, vec![h])),
        }
    }
    // Stable: equal counts keep the order of their first host.
    groups.sort_by_key(|(_, _, hosts)| std::cmp::Reverse(hosts.len()));
    for (kind, cause, hosts) in &groups {
        let _ = writeln!(s, "{kind} on {} host(s): {cause}", hosts.len());
        let named: Vec<String> = hosts
            .iter()
            .take(HOSTS_PER_CAUSE)
            .map(|h| format!("{} ({})", h.host, h.group))
            .collect();
        let more = hosts.len().saturating_sub(HOSTS_PER_CAUSE);
        if more > 0 {
            let _ = writeln!(
                s,
                "  {} … and {more} more (all with -v, and in --output json)",
                named.join(", ")
            );
        } else {
            let _ = writeln!(s, "  {}", named.join(", "));
        }
    }
}

/// The cause with what differs from host to host taken out, so that hosts failing the same
/// way fall in one group: the host's own name becomes `<host>`, an IP address (with or
/// without a port) `<address>`. Connection errors name the address they tried. Secrets are
/// masked first: a rewritten secret would no longer match the masker.
fn generic_cause(h: &HostReport, masker: &Masker) -> String {
    let masked = masker.mask(cause(h));
    let text = masked.as_str();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !is_address_char(c))
            .unwrap_or(rest.len());
        if end == 0 {
            let c = rest.chars().next().map_or(1, char::len_utf8);
            out.push_str(&rest[..c]);
            rest = &rest[c..];
            continue;
        }
        // A word's trailing `.` or `:` ends a sentence or a label, it is not part of it.
        let word = rest[..end].trim_end_matches(['.', ':']);
        let word = if word.is_empty() { &rest[..end] } else { word };
        if word == h.host {
            out.push_str("<host>");
        } else if is_address(word) {
            out.push_str("<address>");
        } else {
            out.push_str(word);
        }
        rest = &rest[word.len()..];
    }
    out
}

fn is_address_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '_' | '[' | ']' | '%')
}

fn is_address(word: &str) -> bool {
    word.parse::<std::net::IpAddr>().is_ok() || word.parse::<std::net::SocketAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, status: HostStatus, error: &str) -> HostReport {
        let mut h = HostReport::new(name, "web");
        h.status = status;
        h.error = (!error.is_empty()).then(|| error.to_string());
        h
    }

    /// 150 hosts refuse the connection (each message names its own address), 50 fail one
    /// task (each message names the host), 10 are fine.
    fn big_run() -> RunReport {
        let mut run = RunReport::default();
        for i in 0..210 {
            let name = format!("web-{i:03}");
            run.hosts.push(match i {
                0..150 => host(
                    &name,
                    HostStatus::Unreachable,
                    &format!(
                        "connect: cannot connect to 10.0.{}.{}:22: Connection refused (os error 111)",
                        i / 100,
                        i % 100
                    ),
                ),
                150..200 => host(
                    &name,
                    HostStatus::Failed,
                    &format!(
                        "start exporters (playbooks/exporters.yml:12): docker is not running on {name}."
                    ),
                ),
                _ => host(&name, HostStatus::Ok, ""),
            });
        }
        run
    }

    /// The lines after the per-host recap lines and before the totals.
    fn failure_lines(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| {
                ["FAILED ", "UNREACHABLE ", "  "]
                    .iter()
                    .any(|p| l.starts_with(p))
            })
            .collect()
    }

    #[test]
    fn two_hundred_failures_with_two_causes_are_summarised() {
        let text = recap(&big_run(), &Masker::default(), 0);
        assert_eq!(
            failure_lines(&text),
            [
                "UNREACHABLE on 150 host(s): connect: cannot connect to <address>: Connection refused (os error 111)",
                "  web-000 (web), web-001 (web), web-002 (web), web-003 (web), web-004 (web) … and 145 more (all with -v, and in --output json)",
                "FAILED on 50 host(s): start exporters (playbooks/exporters.yml:12): docker is not running on <host>.",
                "  web-150 (web), web-151 (web), web-152 (web), web-153 (web), web-154 (web) … and 45 more (all with -v, and in --output json)",
            ],
            "{text}"
        );
        // The per-host counts and the totals are still all there.
        assert!(text.contains("web-209 : ok="), "{text}");
        assert!(
            text.contains("210 hosts: 10 ok, 0 changed, 50 failed, 150 unreachable"),
            "{text}"
        );
    }

    #[test]
    fn verbose_lists_every_failure_with_its_own_cause() {
        let run = big_run();
        let text = recap(&run, &Masker::default(), 1);
        let lines = failure_lines(&text);
        assert_eq!(lines.len(), 200, "{text}");
        assert!(lines.contains(
            &"UNREACHABLE web-149 (web): connect: cannot connect to 10.0.1.49:22: Connection refused (os error 111)"
        ));
        assert!(lines.contains(
            &"FAILED web-199 (web): start exporters (playbooks/exporters.yml:12): docker is not running on web-199."
        ));
    }

    #[test]
    fn a_few_failures_are_listed_one_by_one() {
        let mut run = big_run();
        run.hosts.retain(|h| {
            let n: usize = h.host["web-".len()..].parse().unwrap();
            n < 3 || (150..153).contains(&n) || n >= 200
        });
        assert_eq!(run.failed_hosts().len(), 6);
        let text = recap(&run, &Masker::default(), 0);
        let lines = failure_lines(&text);
        assert_eq!(lines.len(), 6, "{text}");
        assert_eq!(
            lines[0],
            "UNREACHABLE web-000 (web): connect: cannot connect to 10.0.0.0:22: Connection refused (os error 111)"
        );
    }

    #[test]
    fn a_secret_in_a_grouped_cause_stays_masked() {
        let masker = Masker::default();
        masker.add("s3cret 10.0.0.9");
        let mut run = RunReport::default();
        for i in 0..12 {
            run.hosts.push(host(
                &format!("h{i}"),
                HostStatus::Failed,
                "login: sudo refused password s3cret 10.0.0.9",
            ));
        }
        let text = recap(&run, &masker, 0);
        assert!(!text.contains("s3cret"), "{text}");
        assert!(
            text.contains("FAILED on 12 host(s): login: sudo refused password ********"),
            "{text}"
        );
    }

    #[test]
    fn different_causes_stay_apart() {
        let mut run = RunReport::default();
        for i in 0..12 {
            let why = if i % 3 == 0 {
                "Connection refused"
            } else {
                "No route to host"
            };
            run.hosts.push(host(
                &format!("h{i}"),
                HostStatus::Unreachable,
                &format!("connect: cannot connect to [fd00::{i}]:22: {why}"),
            ));
        }
        // The host name as part of a longer word is not the host.
        run.hosts
            .push(host("h1", HostStatus::Failed, "task: h1x failed"));
        let text = recap(&run, &Masker::default(), 0);
        assert_eq!(
            failure_lines(&text),
            [
                "UNREACHABLE on 8 host(s): connect: cannot connect to <address>: No route to host",
                "  h1 (web), h2 (web), h4 (web), h5 (web), h7 (web) … and 3 more (all with -v, and in --output json)",
                "UNREACHABLE on 4 host(s): connect: cannot connect to <address>: Connection refused",
                "  h0 (web), h3 (web), h6 (web), h9 (web)",
                "FAILED on 1 host(s): task: h1x failed",
                "  h1 (web)",
            ],
            "{text}"
        );
    }
}
