//! `promfleet completions` and `promfleet man`, checked with the tools that read them: bash
//! parses and runs the completion function, man (or groff) renders the pages. The expected
//! names come from the clap definitions themselves (`Cli::command()`), so a new subcommand is
//! covered without editing this file.

use std::collections::BTreeSet;
use std::process::Command;

use clap::CommandFactory;
use promfleet::cli::Cli;

use crate::support::*;

/// Every subcommand path, e.g. `["deploy"]`, `["inventory", "list"]` (clap's implicit
/// `help` subcommand left out, as the generators leave it out of the pages).
fn subcommand_paths() -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let mut path = prefix.to_vec();
            path.push(sub.get_name().to_string());
            out.push(path.clone());
            walk(sub, &path, out);
        }
    }
    let mut out = Vec::new();
    walk(&Cli::command(), &[], &mut out);
    assert!(out.len() > 10, "the CLI has its subcommands: {out:?}");
    out
}

fn generated(args: &[&str]) -> String {
    let o = Run::new(args).output();
    assert_eq!(o.status.code(), Some(0), "stderr:\n{}", stderr(&o));
    stdout(&o)
}

/// Asks bash's completion function what it offers, as bash does on TAB: for every
/// subcommand, the words before it plus its name without the last letter must offer the name;
/// `deploy --accept-n` must offer `--accept-new-host-keys`.
#[test]
fn bash_completion_offers_every_subcommand_and_flag() {
    if !have("bash") {
        eprintln!("SKIPPED: bash is not installed");
        return;
    }
    let script = generated(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("promfleet.bash");
    std::fs::write(&file, &script).unwrap();
    let syntax = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(syntax.status.success(), "bash -n: {}", stderr(&syntax));

    let mut cases: Vec<(Vec<String>, String)> = subcommand_paths()
        .into_iter()
        .map(|p| {
            let name = p.last().unwrap().clone();
            let mut words = p[..p.len() - 1].to_vec();
            words.push(name[..name.len() - 1].to_string());
            (words, name)
        })
        .collect();
    cases.push((
        vec!["deploy".into(), "--accept-n".into()],
        "--accept-new-host-keys".into(),
    ));
    // One bash for all cases: source the script, call `_promfleet` as `complete -F` would
    // (COMP_WORDS/COMP_CWORD set; arguments: command, current word, previous word) and print
    // the offers of case N as `N<TAB>offer`.
    let mut driver = format!("source '{}'\n", file.display());
    for (n, (words, _)) in cases.iter().enumerate() {
        let all: Vec<String> = std::iter::once("promfleet".to_string())
            .chain(words.iter().cloned())
            .collect();
        let cword = all.len() - 1;
        let quoted: Vec<String> = all.iter().map(|w| format!("'{w}'")).collect();
        driver.push_str(&format!(
            "COMP_WORDS=({}); COMP_CWORD={cword}; COMPREPLY=(); _promfleet promfleet {} {}; for w in \"${{COMPREPLY[@]}}\"; do printf '{n}\\t%s\\n' \"$w\"; done\n",
            quoted.join(" "),
            quoted[cword],
            quoted[cword - 1],
        ));
    }
    let o = Command::new("bash")
        .arg("-c")
        .arg(&driver)
        .output()
        .unwrap();
    assert!(o.status.success(), "bash: {}", stderr(&o));
    let offers: BTreeSet<(usize, String)> = stdout(&o)
        .lines()
        .filter_map(|l| {
            let (n, w) = l.split_once('\t')?;
            Some((n.parse().ok()?, w.to_string()))
        })
        .collect();
    for (n, (words, want)) in cases.iter().enumerate() {
        assert!(
            offers.contains(&(n, want.clone())),
            "`promfleet {}<TAB>` does not offer {want}; offers: {:?}",
            words.join(" "),
            offers.iter().filter(|(m, _)| *m == n).collect::<Vec<_>>()
        );
    }
}

/// Renders a page as a reader would see it: `man -l` (warnings on, which must be none), or
/// groff when man is absent; None when neither is installed.
fn render_page(page: &std::path::Path) -> Option<String> {
    let o = if have("man") {
        Command::new("man")
            .env("MANWIDTH", "200")
            .args(["--warnings", "-l"])
            .arg(page)
            .output()
            .unwrap()
    } else if have("groff") {
        // -P-cbou: plain text, no overstrike bold/underline.
        Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-P-cbou"])
            .arg(page)
            .output()
            .unwrap()
    } else {
        return None;
    };
    assert!(
        o.status.success(),
        "rendering {}: {}",
        page.display(),
        stderr(&o)
    );
    assert_eq!(
        stderr(&o).trim(),
        "",
        "warnings rendering {}",
        page.display()
    );
    Some(stdout(&o))
}

#[test]
fn man_pages_render_and_name_every_subcommand() {
    if !have("man") && !have("groff") {
        eprintln!("SKIPPED: neither man nor groff is installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let top = dir.path().join("stdout.1");
    std::fs::write(&top, generated(&["man"])).unwrap();
    let text = render_page(&top).unwrap();
    for p in subcommand_paths().iter().filter(|p| p.len() == 1) {
        assert!(
            text.contains(&format!("promfleet-{}(1)", p[0])),
            "the page lists {}:\n{text}",
            p[0]
        );
    }

    // --out: one page per command, each renders and shows its own name and flags.
    let out = dir.path().join("man");
    let o = Run::new(&["man", "--out"]).arg(&out).output();
    assert_eq!(o.status.code(), Some(0), "stderr:\n{}", stderr(&o));
    let want: BTreeSet<String> = std::iter::once("promfleet.1".to_string())
        .chain(
            subcommand_paths()
                .iter()
                .map(|p| format!("promfleet-{}.1", p.join("-"))),
        )
        .collect();
    let got: BTreeSet<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        std::fs::read(out.join("promfleet.1")).unwrap(),
        std::fs::read(&top).unwrap(),
        "--out writes the page `man` prints"
    );
    let deploy = render_page(&out.join("promfleet-deploy.1")).unwrap();
    assert!(deploy.contains("promfleet-deploy"), "{deploy}");
    assert!(deploy.contains("--accept-new-host-keys"), "{deploy}");
}
