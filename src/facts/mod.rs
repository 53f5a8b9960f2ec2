//! Facts: typed, read-only probes of one host (pyinfra's idea). A fact is a probe script built
//! with `transport::Script` plus a parser of what it printed; it never changes the host. Facts
//! are asked through a per-host [`Facts`] cache, so a run asks each one at most once per host,
//! and several facts asked together cost one round trip ([`Facts::prefetch`]). Modules,
//! `--check`, `status` and `preflight` read hosts only through here.
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

/// One host's facts for one run: asked at most once each, cached.
pub struct Facts {
    transport: Arc<dyn Transport>,
    cache: Mutex<HashMap<String, Arc<dyn Any + Send + Sync>>>,
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

    /// The fact's answer: from the cache, else asked now (one round trip).
    pub async fn get<F: Fact>(&self, fact: &F) -> Result<F::Output, FactError> {
        if let Some(v) = self.cached::<F>(&Fact::key(fact)) {
            return Ok(v);
        }
        self.prefetch(&[fact as &dyn ErasedFact]).await?;
        self.cached::<F>(&Fact::key(fact))
            .ok_or_else(|| FactError::Missing {
                fact: Fact::key(fact),
            })
    }

    /// Ask every fact not yet cached, all in one round trip.
    pub async fn prefetch(&self, facts: &[&dyn ErasedFact]) -> Result<(), FactError> {
        let wanted: Vec<&dyn ErasedFact> = {
            let cache = self.lock();
            let mut seen = std::collections::HashSet::new();
            facts
                .iter()
                .copied()
                .filter(|f| {
                    let k = f.key();
                    !cache.contains_key(&k) && seen.insert(k)
                })
                .collect()
        };
        if wanted.is_empty() {
            return Ok(());
        }
        self.round_trips
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sections = if let [only] = wanted[..] {
            // One fact: its probe as is, no markers (and a fake host answers it directly).
            let out = self.transport.exec(&only.script().build(), None).await?;
            let status = out
                .status
                .ok_or_else(|| FactError::parse(only, "the probe was killed before it finished"))?;
            vec![Probe {
                stdout: out.stdout_str(),
                status,
            }]
        } else {
            let marker = &self.marker;
            let script = batch_script(marker, &wanted);
            let out = self.transport.exec(&script.build(), None).await?;
            split_sections(&out.stdout_str(), marker)
        };
        let mut answers = Vec::with_capacity(wanted.len());
        for (i, f) in wanted.iter().enumerate() {
            let probe = sections
                .get(i)
                .cloned()
                .ok_or_else(|| FactError::Missing { fact: f.key() })?;
            let v = f.parse_any(&probe).map_err(|m| FactError::parse(*f, m))?;
            answers.push((f.key(), v));
        }
        self.lock().extend(answers);
        Ok(())
    }

    /// The fact's answer if it was asked already (never a round trip): for a module that
    /// would rather act than ask, e.g. an upload that compares on its own.
    pub fn peek<F: Fact>(&self, fact: &F) -> Option<F::Output> {
        self.cached::<F>(&Fact::key(fact))
    }

    /// Drop a cached answer the run has made stale (a file written, a project brought up).
    pub fn forget<F: Fact>(&self, fact: &F) {
        self.lock().remove(&Fact::key(fact));
    }

    fn cached<F: Fact>(&self, key: &str) -> Option<F::Output> {
        self.lock()
            .get(key)
            .and_then(|v| v.downcast_ref::<F::Output>().cloned())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<dyn Any + Send + Sync>>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
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
}
