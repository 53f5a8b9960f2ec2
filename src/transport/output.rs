//! What a remote command printed, kept within a fixed size: a host (or a runaway command such
//! as `yes`) can print without end, and promfleet holds up to `--forks` outputs at once.

/// Bytes kept from each end of a stream by default (head and tail, so at most 2 × this each).
pub const KEEP: usize = 64 * 1024;

/// One output stream kept as its first and last `keep` bytes; what lies between is counted
/// and shown as "… N bytes elided". Parsers of command output still work: the commands
/// promfleet parses print a few lines.
#[derive(Debug, Clone)]
pub struct Capture {
    keep: usize,
    head: Vec<u8>,
    /// The newest bytes; trimmed to `keep` whenever it reaches twice that (amortised O(1)).
    tail: Vec<u8>,
    total: u64,
}

impl Default for Capture {
    fn default() -> Self {
        Capture::new(KEEP)
    }
}

impl Capture {
    pub fn new(keep: usize) -> Capture {
        Capture {
            keep: keep.max(1),
            head: Vec::new(),
            tail: Vec::new(),
            total: 0,
        }
    }

    pub fn push(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        if self.head.len() < self.keep {
            let n = data.len().min(self.keep - self.head.len());
            self.head.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        if data.len() >= self.keep {
            self.tail.clear();
            self.tail.extend_from_slice(&data[data.len() - self.keep..]);
            return;
        }
        self.tail.extend_from_slice(data);
        if self.tail.len() >= 2 * self.keep {
            self.tail.drain(..self.tail.len() - self.keep);
        }
    }

    fn tail(&self) -> &[u8] {
        &self.tail[self.tail.len().saturating_sub(self.keep)..]
    }

    /// Bytes received but not kept.
    pub fn elided(&self) -> u64 {
        self.total - (self.head.len() + self.tail().len()) as u64
    }

    /// Bytes the command printed in all.
    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Every byte, when nothing was elided.
    pub fn complete(&self) -> Option<Vec<u8>> {
        (self.elided() == 0).then(|| [self.head.as_slice(), self.tail()].concat())
    }

    /// The text as shown to people: head, "… N bytes elided" on a line of its own, tail.
    pub fn text(&self) -> String {
        let head = String::from_utf8_lossy(&self.head);
        let tail = String::from_utf8_lossy(self.tail());
        match self.elided() {
            0 => format!("{head}{tail}"),
            n => format!("{head}\n… {n} bytes elided\n{tail}"),
        }
    }

    /// The last non-empty line (for one-line causes).
    pub fn last_line(&self) -> Option<String> {
        String::from_utf8_lossy(self.tail_or_head())
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_string())
    }

    /// The kept bytes: head and tail (they are not contiguous when something was elided).
    pub fn kept(&self) -> [&[u8]; 2] {
        [&self.head, self.tail()]
    }

    /// Edit the kept bytes in place (head and tail each), e.g. to strip a known marker; what
    /// `edit` removes is no longer counted.
    pub fn edit_kept(&mut self, edit: impl Fn(&mut Vec<u8>)) {
        let drop = self.tail.len().saturating_sub(self.keep);
        self.tail.drain(..drop);
        let before = (self.head.len() + self.tail.len()) as u64;
        edit(&mut self.head);
        edit(&mut self.tail);
        let after = (self.head.len() + self.tail.len()) as u64;
        self.total -= before.saturating_sub(after);
    }

    /// Take `prefix` off the start of the stream if it starts with it (a marker line another
    /// script printed first); whether it did.
    pub fn strip_prefix(&mut self, prefix: &[u8]) -> bool {
        if !self.head.starts_with(prefix) {
            return false;
        }
        self.head.drain(..prefix.len());
        self.total -= prefix.len() as u64;
        true
    }

    fn tail_or_head(&self) -> &[u8] {
        if self.tail().iter().any(|b| !b.is_ascii_whitespace()) {
            self.tail()
        } else {
            &self.head
        }
    }
}

/// The output of one remote command.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    pub stdout: Capture,
    pub stderr: Capture,
    /// Exit status; `None` if the command was killed by a signal or the channel closed early.
    pub status: Option<u32>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
    pub fn stdout_str(&self) -> String {
        self.stdout.text()
    }
    pub fn stderr_str(&self) -> String {
        self.stderr.text()
    }
    /// A one-line cause for reports: last non-empty stderr line, else stdout's.
    pub fn short_error(&self) -> String {
        let code = match self.status {
            Some(c) => format!("exit {c}"),
            None => "killed".to_string(),
        };
        match self.stderr.last_line().or_else(|| self.stdout.last_line()) {
            Some(l) => format!("{code}: {l}"),
            None => code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_output_is_kept_whole() {
        let mut c = Capture::new(8);
        c.push(b"hello ");
        c.push(b"world\n");
        assert_eq!(c.text(), "hello world\n");
        assert_eq!(c.elided(), 0);
        assert_eq!(c.complete().as_deref(), Some(&b"hello world\n"[..]));
    }

    #[test]
    fn big_output_keeps_head_and_tail_and_counts_the_rest() {
        let mut c = Capture::new(4);
        // Pushed in pieces of every size, the result is the same.
        let data: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
        for chunk in [1usize, 3, 4, 5, 7, 1000] {
            let mut c2 = Capture::new(4);
            for p in data.chunks(chunk) {
                c2.push(p);
            }
            assert_eq!(c2.text(), "abcd\n… 992 bytes elided\nijkl", "chunk {chunk}");
            assert!(c2.head.capacity() <= 8 && c2.tail.capacity() <= 16);
        }
        c.push(&data);
        assert_eq!(c.elided(), 992);
        assert_eq!(c.total(), 1000);
        assert!(c.complete().is_none());
        assert_eq!(c.last_line().as_deref(), Some("ijkl"));
    }
}
