//! known_hosts as sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT" defines it and ssh(1) reads it: the
//! lines of several files that name one host (plain patterns with `*`, `?`, `!`, comma lists and
//! `[host]:port`, or hashed `|1|salt|hash` names), their markers (`@cert-authority`,
//! `@revoked`), and the status OpenSSH's hostfile.c gives a presented key. Also writes one line
//! (plain or hashed, as `ssh-keygen -H` does) under a file lock. What to do with a status
//! (strictness, recording) is the connection's policy: `verify`.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::public::KeyData;
use russh::keys::{Algorithm, Certificate, HashAlg, PublicKey};
use sha1::Sha1;

/// OpenSSH's salt and digest length for hashed names (SHA-1).
const HASH_LEN: usize = 20;

/// What a line says about its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// A host key of the host.
    Key,
    /// `@cert-authority`: a CA whose host certificates are trusted for the host.
    CertAuthority,
    /// `@revoked`: never accept this key (nor certificates signed by it).
    Revoked,
}

/// One line that names the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub file: PathBuf,
    /// 1-based; comments and blank lines count, as in OpenSSH's messages.
    pub line: usize,
    pub marker: Marker,
    pub key: KeyData,
}

impl Entry {
    /// `file:line`, the way ssh(1) points at a line.
    pub fn place(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

/// A line skipped because it cannot be read (OpenSSH skips it too; the rest of the file counts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub file: PathBuf,
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {} (line skipped)",
            self.file.display(),
            self.line,
            self.reason
        )
    }
}

/// How a presented plain key stands against the host's lines (hostfile.c's HostStatus).
#[derive(Debug, Clone, PartialEq)]
pub enum Status<'a> {
    /// A `Key` line holds exactly this key.
    Known(&'a Entry),
    /// No `Key` line names the host.
    New,
    /// The host has `Key` lines, none of them this key (whatever their type): the last one.
    Changed(&'a Entry),
    /// An `@revoked` line names this key.
    Revoked(&'a Entry),
}

/// Every line of some known_hosts files that names one host, in file order.
#[derive(Debug, Default)]
pub struct HostKeys {
    entries: Vec<Entry>,
    malformed: Vec<Malformed>,
}

impl HostKeys {
    /// Read `files` in order for lines naming `name` (the lookup name: `host`, `[host]:port`
    /// or a HostKeyAlias). A missing file counts as empty; an unreadable one is reported in
    /// `malformed` with line 0 and otherwise ignored, as ssh does.
    pub fn load(name: &str, files: &[PathBuf]) -> HostKeys {
        let mut keys = HostKeys::default();
        for file in files {
            let mut bytes = Vec::new();
            match File::open(file).and_then(|mut f| f.read_to_end(&mut bytes)) {
                Ok(_) => keys.parse(name, file, &String::from_utf8_lossy(&bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => keys.malformed.push(Malformed {
                    file: file.clone(),
                    line: 0,
                    reason: format!("cannot read: {e}"),
                }),
            }
        }
        keys
    }

    /// Add the lines of one file's `text` that name `name` (lower-cased by the caller, as ssh
    /// does: see `lookup_name`).
    pub fn parse(&mut self, name: &str, file: &Path, text: &str) {
        for (i, raw) in text.split('\n').enumerate() {
            match parse_line(name, raw) {
                Ok(None) => {}
                Ok(Some((marker, key))) => self.entries.push(Entry {
                    file: file.to_path_buf(),
                    line: i + 1,
                    marker,
                    key,
                }),
                Err(reason) => self.malformed.push(Malformed {
                    file: file.to_path_buf(),
                    line: i + 1,
                    reason,
                }),
            }
        }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn malformed(&self) -> &[Malformed] {
        &self.malformed
    }

    /// Tell `warn` about each skipped line, once per process (50 connections read the same
    /// file).
    pub fn warn_malformed(&self, warn: &dyn Fn(&str)) {
        static SEEN: OnceLock<Mutex<HashSet<(PathBuf, usize)>>> = OnceLock::new();
        let mut seen = SEEN
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for m in &self.malformed {
            if seen.insert((m.file.clone(), m.line)) {
                warn(&format!("known_hosts {m}"));
            }
        }
    }

    /// Algorithms of the host's plain keys, in file order, without repeats.
    pub fn key_algorithms(&self) -> Vec<Algorithm> {
        let mut out: Vec<Algorithm> = Vec::new();
        for e in self.with(Marker::Key) {
            let a = e.key.algorithm();
            if !out.contains(&a) {
                out.push(a);
            }
        }
        out
    }

    /// The first `@cert-authority` line for the host, if any.
    pub fn first_authority(&self) -> Option<&Entry> {
        self.with(Marker::CertAuthority).next()
    }

    /// The `@cert-authority` line holding `ca`, if any.
    pub fn authority(&self, ca: &KeyData) -> Option<&Entry> {
        self.with(Marker::CertAuthority).find(|e| &e.key == ca)
    }

    /// The `@revoked` line holding `key`, if any.
    pub fn revoked(&self, key: &KeyData) -> Option<&Entry> {
        self.with(Marker::Revoked).find(|e| &e.key == key)
    }

    /// The status of a plain key (a certificate's key once its certificate did not do).
    pub fn status(&self, key: &KeyData) -> Status<'_> {
        if let Some(r) = self.revoked(key) {
            return Status::Revoked(r);
        }
        let mut status = Status::New;
        for e in self.with(Marker::Key) {
            if &e.key == key {
                return Status::Known(e);
            }
            status = Status::Changed(e);
        }
        status
    }

    fn with(&self, marker: Marker) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(move |e| e.marker == marker)
    }
}

/// One line: `Ok(None)` for comments, blanks and lines about other hosts; `Err` for a line
/// that cannot be read. Like OpenSSH, the key of a line about another host is not parsed.
fn parse_line(name: &str, raw: &str) -> Result<Option<(Marker, KeyData)>, String> {
    let line = raw.trim_start_matches([' ', '\t']);
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (marker, line) = split_marker(line)?;
    let end = line.find([' ', '\t']).unwrap_or(line.len());
    let (hosts, rest) = line.split_at(end);
    let matched = if hosts.starts_with('|') {
        hashed_name_matches(name, hosts)?
    } else {
        pattern_list_matches(name, hosts) == Some(true)
    };
    if !matched {
        return Ok(None);
    }
    let rest = rest.trim_start_matches([' ', '\t']);
    if rest.is_empty() || rest.starts_with('#') {
        return Err("no key after the host names".into());
    }
    parse_key(rest).map(|k| Some((marker, k)))
}

/// hostfile.c's check_markers: one `@marker` ended by whitespace (a space is looked for
/// first, so `@revoked<TAB>host key` with a later space is not a marker, as in OpenSSH).
fn split_marker(line: &str) -> Result<(Marker, &str), String> {
    if !line.starts_with('@') {
        return Ok((Marker::Key, line));
    }
    let end = line
        .find(' ')
        .or_else(|| line.find('\t'))
        .ok_or("a marker with nothing after it")?;
    let marker = match &line[..end] {
        "@cert-authority" => Marker::CertAuthority,
        "@revoked" => Marker::Revoked,
        other => return Err(format!("unknown marker {other:?}")),
    };
    let rest = line[end..].trim_start_matches([' ', '\t']);
    if rest.starts_with('@') {
        return Err("more than one marker".into());
    }
    Ok((marker, rest))
}

/// `<keytype> <base64> [comment]`; the type must be the blob's (sshkey_read).
fn parse_key(text: &str) -> Result<KeyData, String> {
    let mut fields = text.split([' ', '\t']).filter(|f| !f.is_empty());
    let (Some(kind), Some(blob)) = (fields.next(), fields.next()) else {
        return Err("no key after the key type".into());
    };
    let bytes = BASE64
        .decode(blob)
        .map_err(|e| format!("key is not base64: {e}"))?;
    let key = PublicKey::from_bytes(&bytes).map_err(|e| format!("unreadable {kind} key: {e}"))?;
    if key.algorithm().as_str() != kind {
        return Err(format!(
            "key type {kind} does not match its key ({})",
            key.algorithm().as_str()
        ));
    }
    Ok(key.key_data().clone())
}

/// `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`, compared as OpenSSH does: the name hashed
/// with the line's salt must give exactly the line's text.
fn hashed_name_matches(name: &str, field: &str) -> Result<bool, String> {
    let bad = |why: &str| format!("bad hashed host name: {why}");
    let rest = field.strip_prefix("|1|").ok_or_else(|| bad("not |1|"))?;
    let (salt, _) = rest.split_once('|').ok_or_else(|| bad("no hash"))?;
    let salt = BASE64.decode(salt).map_err(|_| bad("salt is not base64"))?;
    if salt.len() != HASH_LEN {
        return Err(bad("salt is not 20 bytes"));
    }
    Ok(hash_name(name, &salt) == field)
}

/// The hashed form of `name` with `salt` (`ssh-keygen -H`).
pub fn hash_name(name: &str, salt: &[u8]) -> String {
    // HMAC accepts any key length: this cannot fail.
    let mac = Hmac::<Sha1>::new_from_slice(salt)
        .map(|m| m.chain_update(name.as_bytes()).finalize().into_bytes())
        .map(|d| BASE64.encode(d))
        .unwrap_or_default();
    format!("|1|{}|{}", BASE64.encode(salt), mac)
}

/// match.c's match_pattern_list (lower-cased): `Some(true)` a pattern matches, `Some(false)`
/// none does, `None` a `!pattern` matches (which wins over any positive match).
pub fn pattern_list_matches(name: &str, list: &str) -> Option<bool> {
    let mut positive = false;
    for pattern in list.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        if glob(name.as_bytes(), pattern.to_ascii_lowercase().as_bytes()) {
            if negated {
                return None;
            }
            positive = true;
        }
    }
    Some(positive)
}

/// `*` any run of characters, `?` one character, everything else itself.
fn glob(s: &[u8], p: &[u8]) -> bool {
    let (mut si, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == s[si] => {
                si += 1;
                pi += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// The name ssh looks a host up under: `host`, or `[host]:port` off port 22 (lower-cased).
pub fn lookup_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// The line ssh(1) appends for a new key: `name type base64`, the name hashed when asked.
pub fn host_line(name: &str, key: &KeyData, hashed: bool) -> Result<String, String> {
    let key_text = PublicKey::new(key.clone(), "")
        .to_openssh()
        .map_err(|e| e.to_string())?;
    let name = if hashed {
        let salt: [u8; HASH_LEN] = rand::random();
        hash_name(name, &salt)
    } else {
        name.to_string()
    };
    Ok(format!("{name} {}", key_text.trim_end()))
}

/// A known_hosts file held under an exclusive lock (flock) for a check-then-append: another
/// promfleet process (or connection) recording the same host waits and then sees its line.
pub struct LockedFile {
    file: File,
}

impl LockedFile {
    /// Open (creating it and its directory) and lock `path`.
    pub fn open(path: &Path) -> std::io::Result<LockedFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        file.lock()?;
        Ok(LockedFile { file })
    }

    /// Append one line with a single write (O_APPEND), after a newline if the file lacks its
    /// last one, so a reader never sees half a line glued to another.
    pub fn append(&mut self, line: &str) -> std::io::Result<()> {
        let mut text = String::new();
        let len = self.file.seek(SeekFrom::End(0))?;
        if len > 0 {
            let mut last = [0u8; 1];
            self.file.seek(SeekFrom::Start(len - 1))?;
            self.file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                text.push('\n');
            }
        }
        text.push_str(line);
        text.push('\n');
        self.file.write_all(text.as_bytes())?;
        self.file.sync_data()
    }
}

/// Why a host certificate signed by a listed CA is still not valid for `principal` at `now`
/// (sshkey_cert_check_host with OpenSSH's default CASignatureAlgorithms).
pub fn certificate_problem(
    cert: &Certificate,
    ca: &Entry,
    principal: &str,
    now: u64,
) -> Option<String> {
    if !cert.cert_type().is_host() {
        return Some("its certificate is not a host certificate".into());
    }
    if now < cert.valid_after() {
        return Some("its certificate is not yet valid".into());
    }
    if now >= cert.valid_before() {
        return Some("its certificate has expired".into());
    }
    let principals = cert.valid_principals();
    if !principals.is_empty() && !principals.iter().any(|p| p == principal) {
        return Some(format!(
            "its certificate is not valid for {principal} (principals: {})",
            principals.join(",")
        ));
    }
    if !cert.critical_options().is_empty() {
        return Some("its certificate has critical options (none are defined for hosts)".into());
    }
    if cert.signature().algorithm() == (Algorithm::Rsa { hash: None }) {
        return Some("its certificate is signed with ssh-rsa (SHA-1), which ssh refuses".into());
    }
    let ca_fingerprint = ca.key.fingerprint(HashAlg::Sha256);
    if cert.validate_at(now, [&ca_fingerprint]).is_err() {
        return Some(format!(
            "its certificate's signature does not verify with the CA at {}",
            ca.place()
        ));
    }
    None
}

/// Two unrelated ed25519 keys (made with ssh-keygen) for the unit tests of this module and
/// of `verify`.
#[cfg(test)]
pub(super) mod test_keys {
    pub const ED_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJrwtm9vKWv3SHpVC2TkVYLdGSfd3jh9by7LZ7yvanBh";
    pub const ED_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOYLxAdVo+mOajXTu6L55JMymMu4yO+UiWiu76HyAjkj";
}

#[cfg(test)]
mod tests {
    use super::test_keys::{ED_A, ED_B};
    use super::*;

    fn key(line: &str) -> KeyData {
        parse_key(line).expect("test key")
    }

    fn load(name: &str, text: &str) -> HostKeys {
        let mut k = HostKeys::default();
        k.parse(name, Path::new("kh"), text);
        k
    }

    #[test]
    fn patterns_follow_match_pattern_list() {
        let cases = [
            ("host.lan", "host.lan", Some(true)),
            ("host.lan", "HOST.LAN", Some(true)),
            ("host.lan", "*.lan", Some(true)),
            ("host.lan", "h?st.lan", Some(true)),
            ("host.lan", "h?t.lan", Some(false)),
            ("bad.lan", "*.lan,!bad.lan", None),
            ("bad.lan", "!bad.lan", None),
            ("good.lan", "!bad.lan", Some(false)),
            ("[10.0.1.7]:22", "[10.0.1.*]:22", Some(true)),
            ("[10.0.1.7]:2222", "[10.0.1.*]:22", Some(false)),
            ("10.0.1.7", "10.0.1.7,other", Some(true)),
            ("a", "", Some(false)),
            ("abc", "*", Some(true)),
            ("abc", "a*c*", Some(true)),
            ("abc", "*b", Some(false)),
        ];
        for (name, list, want) in cases {
            assert_eq!(pattern_list_matches(name, list), want, "{name} vs {list}");
        }
    }

    #[test]
    fn hashed_names_match_their_host_only() {
        let salt = [7u8; 20];
        let hashed = hash_name("[127.0.0.2]:2222", &salt);
        assert!(hashed.starts_with("|1|BwcHBwcHBwcHBwcHBwcHBwcHBwc=|"));
        assert_eq!(hashed_name_matches("[127.0.0.2]:2222", &hashed), Ok(true));
        assert_eq!(hashed_name_matches("127.0.0.2", &hashed), Ok(false));
        assert!(hashed_name_matches("x", "|1|AAAA|AAAA").is_err());
        assert!(hashed_name_matches("x", "|2|a|b").is_err());
    }

    /// HMAC-SHA1 of the name keyed by the salt: the expected value was computed with
    /// `openssl dgst -sha1 -mac HMAC -macopt hexkey:00…00` (20 zero bytes).
    #[test]
    fn hashed_name_is_hmac_sha1_of_the_name() {
        assert_eq!(
            hash_name("127.0.0.1", &[0u8; 20]),
            "|1|AAAAAAAAAAAAAAAAAAAAAAAAAAA=|rhL+O18Sm1zEzdKxNre3lHxNJ0E="
        );
    }

    #[test]
    fn line_numbers_count_comments_blanks_and_skipped_lines() {
        let text = format!("# comment\n\nother {ED_B}\nhost {ED_A}\n");
        let k = load("host", &text);
        assert_eq!(k.entries().len(), 1);
        assert_eq!(k.entries()[0].line, 4);
    }

    #[test]
    fn tabs_separate_fields() {
        let (kind, blob) = ED_A.split_once(' ').expect("two fields");
        let k = load("host", &format!("host\t{kind}\t{blob}\tcomment\n"));
        assert_eq!(k.entries().len(), 1, "{:?}", k.malformed());
    }

    #[test]
    fn malformed_lines_are_skipped_and_named() {
        let text = format!(
            "host ssh-ed25519 AAAA!!notbase64\nhost {ED_A}\nhost\n@bogus host {ED_A}\nhost ssh-rsa {}\n",
            &ED_A[12..]
        );
        let k = load("host", &text);
        assert_eq!(k.entries().len(), 1);
        assert_eq!(k.entries()[0].line, 2);
        let lines: Vec<usize> = k.malformed().iter().map(|m| m.line).collect();
        assert_eq!(lines, vec![1, 3, 4, 5], "{:?}", k.malformed());
    }

    #[test]
    fn lines_about_other_hosts_are_not_parsed() {
        let k = load("host", "other ssh-ed25519 garbage\n");
        assert!(k.malformed().is_empty());
        assert!(k.entries().is_empty());
    }

    #[test]
    fn markers_are_read() {
        let text = format!("@revoked * {ED_B}\n@cert-authority *.lan {ED_A}\nhost.lan {ED_A}\n");
        let k = load("host.lan", &text);
        let markers: Vec<Marker> = k.entries().iter().map(|e| e.marker).collect();
        assert_eq!(
            markers,
            vec![Marker::Revoked, Marker::CertAuthority, Marker::Key]
        );
        assert!(matches!(k.status(&key(ED_B)), Status::Revoked(e) if e.line == 1));
        assert!(matches!(k.status(&key(ED_A)), Status::Known(e) if e.line == 3));
        assert_eq!(k.authority(&key(ED_A)).map(|e| e.line), Some(2));
    }

    #[test]
    fn a_marker_then_tab_with_a_later_space_is_not_a_marker() {
        let k = load("host", &format!("@revoked\thost {ED_A}\n"));
        assert!(k.entries().is_empty());
        assert_eq!(k.malformed().len(), 1);
    }

    #[test]
    fn status_is_changed_when_another_key_of_any_type_is_known() {
        let k = load("host", &format!("host {ED_B}\n"));
        assert!(matches!(k.status(&key(ED_A)), Status::Changed(e) if e.line == 1));
        let k = load("host", "");
        assert_eq!(k.status(&key(ED_A)), Status::New);
        // A CA line alone does not make a plain key known nor changed.
        let k = load("host", &format!("@cert-authority host {ED_B}\n"));
        assert_eq!(k.status(&key(ED_A)), Status::New);
    }

    #[test]
    fn negated_pattern_hides_the_line() {
        let k = load("bad.lan", &format!("*.lan,!bad.lan {ED_A}\n"));
        assert!(k.entries().is_empty());
        let k = load("good.lan", &format!("*.lan,!bad.lan {ED_A}\n"));
        assert_eq!(k.entries().len(), 1);
    }

    #[test]
    fn recorded_lines_read_back() {
        for hashed in [false, true] {
            let line = host_line("[127.0.0.2]:2222", &key(ED_A), hashed).expect("line");
            assert_eq!(line.starts_with("|1|"), hashed, "{line}");
            let k = load("[127.0.0.2]:2222", &format!("{line}\n"));
            assert!(matches!(k.status(&key(ED_A)), Status::Known(_)), "{line}");
            let k = load("[127.0.0.3]:2222", &format!("{line}\n"));
            assert_eq!(k.status(&key(ED_A)), Status::New, "{line}");
        }
    }

    #[test]
    fn lookup_name_brackets_other_ports() {
        assert_eq!(lookup_name("Host.LAN", 22), "host.lan");
        assert_eq!(lookup_name("127.0.0.2", 2222), "[127.0.0.2]:2222");
    }

    #[test]
    fn append_adds_the_missing_newline() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("sub/known_hosts");
        let mut f = LockedFile::open(&path).expect("open");
        f.append("a").expect("append");
        drop(f);
        std::fs::write(&path, "a\nb").expect("write");
        let mut f = LockedFile::open(&path).expect("open");
        f.append("c").expect("append");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "a\nb\nc\n");
    }
}
