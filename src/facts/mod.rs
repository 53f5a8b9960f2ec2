//! Facts: typed, read-only probes of one host (pyinfra's idea). A fact is a probe script built
//! with `transport::Script` plus a parser of what it printed; it never changes the host. Facts
//! are asked through a per-host [`Facts`] cache, so a run asks each one at most once per host,
//! and several facts asked together cost one round trip ([`Facts::prefetch`]). A question that
//! timed out or whose answer made no sense is remembered as such: asking again would cost the
//! same (a hung probe: another `--command-timeout`) for the same answer. [`Primed`] hands a
//! host's cache from one pass of a command to the next (preflight → deploy or status), so the
//! facts both need cost one round trip in all; for a host judged unchanged whose session
//! preflight closed, it hands over the answers alone ([`Kept::Detached`]). Modules, `--check`,
//! `status` and `preflight` read hosts only through here.
//!
//! Owns: the `Fact` trait, the cache, and the batching protocol. Must not: write to a host,
//! print, or know a module.

pub mod compose;
pub mod consul;
pub mod files;
pub mod prometheus;
pub mod system;

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::transport::{Script, Transport, TransportError};

/// What a probe returns when it cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FactError {
    /// The host could not be asked (connection, timeout): the transport's error as is.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The probe ran but its answer makes no sense to the parser.
    #[error("fact {fact}: {message}")]
    Parse { fact: String, message: String },
    /// The batched answer lost a section (its output was cut by the output bound).
    #[error("fact {fact}: no answer in the probe output (output cut at the bound?)")]
    Missing { fact: String },
}

impl FactError {
    pub fn parse(fact: &dyn ErasedFact, message: impl Into<String>) -> FactError {
        FactError::Parse {
            fact: fact.key(),
            message: message.into(),
        }
    }
}

/// What one probe printed: its stdout and exit status (stderr is not kept in a batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub stdout: String,
    pub status: u32,
}

/// A typed, read-only probe.
pub trait Fact: Send + Sync {
    type Output: Clone + Send + Sync + 'static;
    /// Name and arguments: equal keys are the same question (the cache key).
    fn key(&self) -> String;
    /// The probe. It runs in a subshell of the batch script; it must not write to the host.
    fn script(&self) -> Script;
    /// Its answer, from what the probe printed.
    fn parse(&self, probe: &Probe) -> Result<Self::Output, String>;
}

/// A `Fact` with its output type erased, so facts of different types batch together.
pub trait ErasedFact: Send + Sync {
    fn key(&self) -> String;
    fn script(&self) -> Script;
    fn parse_any(&self, probe: &Probe) -> Result<Arc<dyn Any + Send + Sync>, String>;
}

impl<F: Fact> ErasedFact for F {
    fn key(&self) -> String {
        Fact::key(self)
    }
    fn script(&self) -> Script {
        Fact::script(self)
    }
    fn parse_any(&self, probe: &Probe) -> Result<Arc<dyn Any + Send + Sync>, String> {
        Ok(Arc::new(self.parse(probe)?))
    }
}

/// What the cache holds for one question.
#[derive(Clone)]
enum Entry {
    Answer(Arc<dyn Any + Send + Sync>),
    /// Asked, and it failed in a way asking again would repeat.
    Failed(Remembered),
}

/// A failure kept for the run (the error types are not `Clone`: their parts are).
#[derive(Clone, Debug)]
enum Remembered {
    /// The probe (or its batch) outlived `--command-timeout`.
    TimedOut {
        host: String,
        after: Duration,
    },
    Parse {
        fact: String,
        message: String,
    },
}

impl Remembered {
    fn error(&self) -> FactError {
        match self.clone() {
            Remembered::TimedOut { host, after } => {
                FactError::Transport(TransportError::CommandTimeout { host, after })
            }
            Remembered::Parse { fact, message } => FactError::Parse { fact, message },
        }
    }
}

/// One host's facts for one run: asked at most once each, cached.
pub struct Facts {
    transport: Arc<dyn Transport>,
    cache: Mutex<HashMap<String, Entry>>,
    round_trips: std::sync::atomic::AtomicUsize,
    marker: String,
}

impl Facts {
    pub fn new(transport: Arc<dyn Transport>) -> Facts {
        Facts {
            transport,
            cache: Mutex::new(HashMap::new()),
            round_trips: Default::default(),
            marker: batch_marker(),
        }
    }

    /// As `new`, with a known batch marker, so a fake host can answer a batch.
    #[cfg(test)]
    pub fn with_marker(transport: Arc<dyn Transport>, marker: &str) -> Facts {
        Facts {
            marker: marker.into(),
            ..Facts::new(transport)
        }
    }

    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// Round trips this cache has made so far (for tests and the benchmark).
    pub fn round_trips(&self) -> usize {
        self.round_trips.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The fact's answer: from the cache (or the failure remembered for it), else asked now
    /// (one round trip).
    pub async fn get<F: Fact>(&self, fact: &F) -> Result<F::Output, FactError> {
        let key = Fact::key(fact);
        if let Some(v) = self.cached::<F>(&key).map_err(|r| r.error())? {
            return Ok(v);
        }
        self.prefetch(&[fact as &dyn ErasedFact]).await?;
        self.cached::<F>(&key)
            .map_err(|r| r.error())?
            .ok_or(FactError::Missing { fact: key })
    }

    /// Ask every fact not yet asked, all in one round trip. Each answer that parses is kept
    /// even when another does not. Err: the first fact asked now or before that has no
    /// answer (a batch that timed out fails every fact in it, now and when asked again).
    pub async fn prefetch(&self, facts: &[&dyn ErasedFact]) -> Result<(), FactError> {
        let (wanted, known_failure) = {
            let cache = self.lock();
            let mut seen = std::collections::HashSet::new();
            let mut failure = None;
            let mut wanted: Vec<&dyn ErasedFact> = Vec::new();
            for f in facts.iter().copied() {
                let k = f.key();
                match cache.get(&k) {
                    Some(Entry::Answer(_)) => {}
                    Some(Entry::Failed(r)) => {
                        failure.get_or_insert_with(|| r.error());
                    }
                    None if seen.insert(k) => wanted.push(f),
                    None => {}
                }
            }
            (wanted, failure)
        };
        if wanted.is_empty() {
            return known_failure.map_or(Ok(()), Err);
        }
        self.round_trips
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sections = match self.ask(&wanted).await {
            Ok(sections) => sections,
            Err(e) => {
                // A timeout is a failure, not a reason to run the probe again (issue 12): the
                // facts of a hung batch are not asked again, one by one or together.
                if let FactError::Transport(TransportError::CommandTimeout { host, after }) = &e {
                    let r = Remembered::TimedOut {
                        host: host.clone(),
                        after: *after,
                    };
                    self.remember(wanted.iter().map(|f| (f.key(), r.clone())));
                }
                return Err(e);
            }
        };
        let mut first_error = known_failure;
        let mut entries = Vec::with_capacity(wanted.len());
        for (i, f) in wanted.iter().enumerate() {
            let Some(probe) = sections.get(i) else {
                // Cut by the output bound: asked alone it may fit, so it is not remembered.
                first_error.get_or_insert(FactError::Missing { fact: f.key() });
                continue;
            };
            match f.parse_any(probe) {
                Ok(v) => entries.push((f.key(), Entry::Answer(v))),
                Err(message) => {
                    let r = Remembered::Parse {
                        fact: f.key(),
                        message,
                    };
                    first_error.get_or_insert_with(|| r.error());
                    entries.push((f.key(), Entry::Failed(r)));
                }
            }
        }
        self.lock().extend(entries);
        first_error.map_or(Ok(()), Err)
    }

    /// One round trip asking `wanted`: each probe's answer, in order (fewer when cut).
    async fn ask(&self, wanted: &[&dyn ErasedFact]) -> Result<Vec<Probe>, FactError> {
        if let [only] = wanted[..] {
            // One fact: its probe as is, no markers (and a fake host answers it directly).
            let out = self.transport.exec(&only.script().build(), None).await?;
            let Some(status) = out.status else {
                let r = Remembered::Parse {
                    fact: only.key(),
                    message: "the probe was killed before it finished".into(),
                };
                let e = r.error();
                self.remember([(only.key(), r)]);
                return Err(e);
            };
            return Ok(vec![Probe {
                stdout: out.stdout_str(),
                status,
            }]);
        }
        let marker = &self.marker;
        let script = batch_script(marker, wanted);
        let out = self.transport.exec(&script.build(), None).await?;
        Ok(split_sections(&out.stdout_str(), marker))
    }

    fn remember(&self, failures: impl IntoIterator<Item = (String, Remembered)>) {
        self.lock()
            .extend(failures.into_iter().map(|(k, r)| (k, Entry::Failed(r))));
    }

    /// The fact's answer if it was asked already (never a round trip): for a module that
    /// would rather act than ask, e.g. an upload that compares on its own.
    pub fn peek<F: Fact>(&self, fact: &F) -> Option<F::Output> {
        self.cached::<F>(&Fact::key(fact)).ok().flatten()
    }

    /// Drop a cached answer the run has made stale (a file written, a project brought up).
    pub fn forget<F: Fact>(&self, fact: &F) {
        self.lock().remove(&Fact::key(fact));
    }

    /// The cached answer (`Ok(None)`: never asked), or the failure remembered for it.
    fn cached<F: Fact>(&self, key: &str) -> Result<Option<F::Output>, Remembered> {
        match self.lock().get(key) {
            Some(Entry::Answer(v)) => Ok(v.downcast_ref::<F::Output>().cloned()),
            Some(Entry::Failed(r)) => Err(r.clone()),
            None => Ok(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A host's answers without the session they were asked over.
#[derive(Clone, Default)]
pub struct Answers(HashMap<String, Entry>);

/// What one pass leaves of a host for the next (see `Primed`).
pub enum Kept {
    /// The cache, with the session it was asked over (kept open for the next pass).
    Over(Arc<Facts>),
    /// The answers of a host whose session preflight closed (beyond the sessions it keeps for
    /// the run), judged unchanged since promfleet deployed it: the next pass acts on them and
    /// connects only if it needs more (`executor::connector::Deferred`).
    Detached(Answers),
}

impl Kept {
    /// The host's cache for a pass working over `session`: the kept one when it was asked
    /// over that very session, the detached answers over it, else an empty one.
    pub fn facts_over(kept: Option<Kept>, session: Arc<dyn Transport>) -> Arc<Facts> {
        match kept {
            Some(Kept::Over(f)) if f.asked_over(&session) => f,
            Some(Kept::Detached(a)) => Arc::new(Facts::with_answers(session, a)),
            _ => Arc::new(Facts::new(session)),
        }
    }
}

/// Hosts' fact caches filled by one pass of a command and read by the next: deploy's and
/// `status`'s preflight ask, in its one batch per host, the facts the run or the status
/// comparison will read, so a host costs one round trip for both. Each host's cache is taken
/// once, and used only over the session it was asked on (a host that lost it asks again),
/// except the answers preflight detached from a session it closed on purpose (`Kept`).
#[derive(Clone, Default)]
pub struct Primed(Arc<Mutex<HashMap<String, Kept>>>);

impl Primed {
    pub fn put(&self, host: &str, facts: Arc<Facts>) {
        self.lock().insert(host.to_string(), Kept::Over(facts));
    }

    /// Keep the answers of a host whose session is about to be closed.
    pub fn put_detached(&self, host: &str, answers: Answers) {
        self.lock()
            .insert(host.to_string(), Kept::Detached(answers));
    }

    /// The host's cache, out of the store (see `Kept::facts_over`).
    pub fn take(&self, host: &str) -> Option<Kept> {
        self.lock().remove(host)
    }

    /// Drop every cache not taken yet (their answers are too old to act on).
    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kept>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Facts {
    /// A cache over `transport` that holds `answers` already.
    pub fn with_answers(transport: Arc<dyn Transport>, answers: Answers) -> Facts {
        Facts {
            cache: Mutex::new(answers.0),
            ..Facts::new(transport)
        }
    }

    /// The answers this cache holds (failures left out: the next session may do better).
    pub fn answers(&self) -> Answers {
        Answers(
            self.lock()
                .iter()
                .filter(|(_, e)| matches!(e, Entry::Answer(_)))
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect(),
        )
    }

    /// Whether this cache was asked over `session` (the same connection, not a new one).
    pub fn asked_over(&self, session: &Arc<dyn Transport>) -> bool {
        Arc::ptr_eq(&self.transport, session)
    }
}

/// One script asking every fact in turn, each in a subshell between marker lines.
fn batch_script(marker: &str, facts: &[&dyn ErasedFact]) -> Script {
    let mut script = Script::new().var("pf_fact_marker", marker);
    for f in facts {
        script = script
            .fragment("printf '\\n%s begin\\n' \"$pf_fact_marker\"")
            .subshell(f.script())
            .fragment("printf '\\n%s end %s\\n' \"$pf_fact_marker\" \"$?\"");
    }
    script
}

/// A line no probe prints by accident.
fn batch_marker() -> String {
    use rand::Rng;
    let n: u64 = rand::thread_rng().r#gen();
    format!("--promfleet-fact-{n:016x}--")
}

/// The sections of a batch answer, in order: each probe's stdout and exit status.
fn split_sections(stdout: &str, marker: &str) -> Vec<Probe> {
    let begin = format!("{marker} begin");
    let end = format!("{marker} end ");
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in stdout.split('\n') {
        if line == begin {
            current = Some(String::new());
        } else if let Some(status) = line.strip_prefix(&end) {
            if let (Some(mut body), Ok(status)) = (current.take(), status.trim().parse::<u32>()) {
                // The end marker is printed after a newline of its own.
                if body.ends_with('\n') {
                    body.pop();
                }
                out.push(Probe {
                    stdout: body,
                    status,
                });
            }
        } else if let Some(body) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::fake::{FakeHost, Reply};

    struct Echo(&'static str);
    impl Fact for Echo {
        type Output = String;
        fn key(&self) -> String {
            format!("echo:{}", self.0)
        }
        fn script(&self) -> Script {
            Script::new()
                .var("word", self.0)
                .fragment("printf '%s' \"$word\"")
        }
        fn parse(&self, p: &Probe) -> Result<String, String> {
            Ok(format!("{}/{}", p.stdout, p.status))
        }
    }

    #[test]
    fn sections_split_by_marker_keep_each_probes_output_and_status() {
        let m = "--m--";
        let text = "\n--m-- begin\nline one\nline two\n--m-- end 0\n\n--m-- begin\n\n--m-- end 3\n";
        let got = split_sections(text, m);
        assert_eq!(
            got,
            vec![
                Probe {
                    stdout: "line one\nline two".into(),
                    status: 0
                },
                Probe {
                    stdout: String::new(),
                    status: 3
                },
            ]
        );
    }

    #[test]
    fn a_batch_script_run_by_sh_splits_back_into_each_probes_answer() {
        let facts: [&dyn ErasedFact; 3] = [&Echo("it's a b"), &Echo(""), &Echo("$(x)\n")];
        let script = batch_script("--m--", &facts).build();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        let got = split_sections(&String::from_utf8_lossy(&out.stdout), "--m--");
        let stdout: Vec<&str> = got.iter().map(|p| p.stdout.as_str()).collect();
        assert_eq!(stdout, ["it's a b", "", "$(x)\n"]);
    }

    #[tokio::test]
    async fn a_fact_is_asked_once_per_host_and_a_batch_is_one_round_trip() {
        let host = Arc::new(FakeHost::new("h1"));
        // The fake does not run shell: answer the batch as the shell would.
        host.on(
            "pf_fact_marker=",
            Reply::stdout("\n--m-- begin\na\n--m-- end 0\n\n--m-- begin\nb\n--m-- end 2\n"),
        );
        let facts = Facts::with_marker(host.clone(), "--m--");
        facts
            .prefetch(&[&Echo("a"), &Echo("b"), &Echo("a")])
            .await
            .unwrap();
        assert_eq!(facts.get(&Echo("a")).await.unwrap(), "a/0");
        assert_eq!(facts.get(&Echo("b")).await.unwrap(), "b/2");
        assert_eq!(facts.round_trips(), 1);
        assert_eq!(host.count("pf_fact_marker="), 1);
    }

    #[tokio::test]
    async fn a_section_cut_from_the_answer_is_missing_not_empty() {
        let host = Arc::new(FakeHost::new("h1"));
        host.on(
            "pf_fact_marker=",
            Reply::stdout("\n--m-- begin\na\n--m-- end 0\n"),
        );
        let facts = Facts::with_marker(host.clone(), "--m--");
        let err = facts.prefetch(&[&Echo("a"), &Echo("b")]).await;
        assert!(
            matches!(err, Err(FactError::Missing { ref fact }) if fact == "echo:b"),
            "{err:?}"
        );
    }

    /// Regression (issue 14 point 6): a host whose facts batch outlived --command-timeout
    /// was asked again fact by fact (`modules::prefetch` ignores the batch's error, then each
    /// step's `get` ran its probe alone): a hung host cost 2× the timeout or more. The
    /// timeout is remembered for every fact of the batch: one round trip, one timeout.
    #[tokio::test]
    async fn timed_out_fact_batch_was_asked_again_per_fact() {
        let host = Arc::new(FakeHost::new("h1"));
        // Every operation hangs until the command timeout: batch or single probe alike.
        host.on("", Reply::TimedOut);
        let facts = Facts::with_marker(host.clone(), "--m--");
        let timed_out = |r: &Result<String, FactError>| {
            matches!(
                r,
                Err(FactError::Transport(TransportError::CommandTimeout { .. }))
            )
        };
        let batch = facts.prefetch(&[&Echo("a"), &Echo("b")]).await;
        assert!(
            matches!(
                batch,
                Err(FactError::Transport(TransportError::CommandTimeout { .. }))
            ),
            "{batch:?}"
        );
        for f in [Echo("a"), Echo("b")] {
            let got = facts.get(&f).await;
            assert!(timed_out(&got), "{got:?}");
        }
        // Asked together again: still the remembered timeout, not a second wait.
        let again = facts.prefetch(&[&Echo("b"), &Echo("a")]).await;
        assert!(again.is_err(), "{again:?}");
        assert_eq!(facts.round_trips(), 1);
        assert_eq!(host.log().len(), 1, "{:?}", host.log());
        // A fact that was not in the hung batch is still asked (its own round trip).
        let c = facts.get(&Echo("c")).await;
        assert!(timed_out(&c), "{c:?}");
        assert_eq!(host.log().len(), 2, "{:?}", host.log());
    }

    /// One answer of a batch that makes no sense fails that fact only: the others are kept,
    /// and nothing is asked again (before, nothing was kept and each fact was asked alone).
    #[tokio::test]
    async fn an_answer_that_does_not_parse_keeps_the_others_and_is_not_asked_again() {
        struct Num;
        impl Fact for Num {
            type Output = u32;
            fn key(&self) -> String {
                "num".into()
            }
            fn script(&self) -> Script {
                Script::new().fragment("echo x")
            }
            fn parse(&self, p: &Probe) -> Result<u32, String> {
                p.stdout
                    .trim()
                    .parse()
                    .map_err(|_| format!("not a number: {:?}", p.stdout))
            }
        }
        let host = Arc::new(FakeHost::new("h1"));
        host.on(
            "pf_fact_marker=",
            Reply::stdout("\n--m-- begin\nx\n--m-- end 0\n\n--m-- begin\nb\n--m-- end 0\n"),
        );
        let facts = Facts::with_marker(host.clone(), "--m--");
        let batch = facts.prefetch(&[&Num, &Echo("b")]).await;
        assert!(
            matches!(batch, Err(FactError::Parse { ref fact, .. }) if fact == "num"),
            "{batch:?}"
        );
        assert_eq!(facts.get(&Echo("b")).await.unwrap(), "b/0");
        let num = facts.get(&Num).await;
        assert!(
            matches!(num, Err(FactError::Parse { ref message, .. }) if message.contains("not a number")),
            "{num:?}"
        );
        assert_eq!(facts.round_trips(), 1);
        assert_eq!(host.log().len(), 1, "{:?}", host.log());
    }
}
