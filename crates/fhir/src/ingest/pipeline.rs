//! The NDJSON import: lines read in chunks, each chunk parsed, mapped, written and published
//! alongside its neighbours, and the lines that wait for a later one placed again after the
//! file.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::Arc;

use forlop_engine::Caller;
use futures::stream::Enumerate;
use futures::StreamExt;

use super::commit::Publishing;
use super::outcomes::{waits, EntryOutcome, FailedLine, ImportSummary};
use super::parsing::{parse_all, RawEntry};
use super::prepare::Prepared;
use super::Fhir;
use crate::outcome::{Issue, IssueType};

/// Chunks of an import parsed and mapped ahead of the one being written.
const PREPARED_AHEAD: usize = 2;

/// A chunk of an import being parsed and mapped: its lines and the task preparing them.
struct Preparing {
    entries: Arc<Vec<RawEntry>>,
    task: tokio::task::JoinHandle<Prepared>,
}

/// A chunk of an import written, not yet in the read model.
struct Written {
    entries: Arc<Vec<RawEntry>>,
    outcomes: Vec<EntryOutcome>,
    publishing: Option<Publishing>,
}

/// One chunk of NDJSON lines, as `gather` reads it.
struct Gathered {
    entries: Vec<RawEntry>,
    /// Lines that could not be read, with why.
    unreadable: Vec<FailedLine>,
    /// The file has ended.
    end: bool,
}

impl Fhir {
    /// Imports NDJSON, `chunk` lines at a time, calling `progress` after each chunk with the
    /// totals so far and each failed line's issues (at the end, also each line left held, with
    /// what it waits for). Lines whose references were not yet known are held and placed again
    /// once the whole file has been read.
    pub async fn import_lines<I, F>(&self, caller: &Caller, lines: I, chunk: usize, mut progress: F) -> ImportSummary
    where
        I: futures::Stream<Item = std::io::Result<String>> + Unpin,
        F: FnMut(&ImportSummary, &[FailedLine]),
    {
        let mut summary = ImportSummary::default();
        let mut held: Vec<RawEntry> = Vec::new();
        let mut lines = lines.enumerate();
        // Chunks are named and mapped strictly in file order: a chunk's names must be in the alias
        // index before the next chunk is placed, or a resource sent again in the next chunk under
        // a new identifier would get a second id. Each mapping task drops its sender when it ends
        // (or panics), which lets the next one start.
        let mut mapped_before: Option<mpsc::Receiver<()>> = None;
        // Chunks being parsed and mapped, in file order, while the oldest one is written: two
        // ahead, so that a chunk is parsed as soon as it is read, and the cores do not wait for
        // the end of a write (its last flush and projection) to start on the next.
        let mut preparing: VecDeque<Preparing> = VecDeque::new();
        // The chunk written last, being folded into the read model while the next is written.
        let mut written: Option<Written> = None;
        let mut next = self.read_chunk(caller, &mut lines, chunk, &mut mapped_before).await;
        loop {
            let (Gathered { entries: _, unreadable, end }, job) = next;
            if !unreadable.is_empty() {
                summary.failed += unreadable.len() as u64;
                progress(&summary, &unreadable);
            }
            if let Some(job) = job {
                summary.resources_read += job.entries.len() as u64;
                preparing.push_back(job);
            }
            if end {
                if let Some(w) = written.take() {
                    self.finish_chunk(w, &mut summary, &mut held, &mut progress).await;
                }
                while let Some(job) = preparing.pop_front() {
                    let w = self.write_chunk(caller, job).await;
                    self.finish_chunk(w, &mut summary, &mut held, &mut progress).await;
                }
                break;
            }
            // Chunks are written in file order, each once the one before is durable (its facts
            // about a patient come after the earlier chunk's), while the one before is folded and
            // the next is read and starts its preparing.
            let oldest = if preparing.len() >= PREPARED_AHEAD { preparing.pop_front() } else { None };
            let previous = written.take();
            let finishing = async {
                if let Some(w) = previous {
                    self.finish_chunk(w, &mut summary, &mut held, &mut progress).await;
                }
            };
            let writing = async {
                match oldest {
                    Some(job) => Some(self.write_chunk(caller, job).await),
                    None => None,
                }
            };
            let reading = self.read_chunk(caller, &mut lines, chunk, &mut mapped_before);
            let ((), w, read) = futures::join!(finishing, writing, reading);
            (written, next) = (w, read);
        }
        self.place_waiting(caller, held, &mut summary, &mut progress).await;
        if summary.events_appended > 0 {
            self.retry_held().await;
        }
        summary
    }

    /// What waited for a later line: placed again, in rounds, until a round places nothing;
    /// then what still waits is held until it arrives.
    async fn place_waiting<F>(
        &self,
        caller: &Caller,
        mut held: Vec<RawEntry>,
        summary: &mut ImportSummary,
        progress: &mut F,
    ) where
        F: FnMut(&ImportSummary, &[FailedLine]),
    {
        while !held.is_empty() {
            let outcomes = self.ingest(caller, &held, false, false).await;
            let mut still = Vec::new();
            let mut placed_any = false;
            let mut failed = Vec::new();
            for (e, o) in held.drain(..).zip(outcomes) {
                summary.events_appended += o.appended as u64;
                summary.duplicates_skipped += o.duplicates as u64;
                if o.ok() {
                    summary.placed_after_waiting += 1;
                    placed_any = true;
                } else if o.appended > 0 || waits(&o.issues) {
                    placed_any |= o.appended > 0;
                    still.push(e);
                } else {
                    summary.failed += 1;
                    failed.push(FailedLine { line: e.path, issues: o.issues });
                }
            }
            if !placed_any {
                // Waiting for what the file did not have: kept until it arrives.
                let outcomes = self.ingest(caller, &still, false, true).await;
                for (e, o) in still.into_iter().zip(outcomes) {
                    summary.events_appended += o.appended as u64;
                    if o.held {
                        summary.held += 1;
                        // Reported with what it waits for, though not a failure.
                        failed.push(FailedLine { line: e.path, issues: o.issues });
                    } else if !o.ok() {
                        summary.failed += 1;
                        failed.push(FailedLine { line: e.path, issues: o.issues });
                    }
                }
                progress(summary, &failed);
                break;
            }
            progress(summary, &failed);
            held = still;
        }
    }

    /// Reads the next chunk and, if it has lines, starts parsing and mapping it on a blocking
    /// thread: its mapping waits for the chunk before it (`mapped_before`), its parsing does not.
    async fn read_chunk<I>(
        &self,
        caller: &Caller,
        lines: &mut Enumerate<I>,
        chunk: usize,
        mapped_before: &mut Option<mpsc::Receiver<()>>,
    ) -> (Gathered, Option<Preparing>)
    where
        I: futures::Stream<Item = std::io::Result<String>> + Unpin,
    {
        let mut gathered = gather(lines, chunk).await;
        if gathered.entries.is_empty() {
            return (gathered, None);
        }
        // Shared with the mapping thread rather than copied: a chunk is megabytes of JSON.
        let entries = Arc::new(std::mem::take(&mut gathered.entries));
        let (fhir, who, mapped) = (self.clone(), caller.clone(), entries.clone());
        let turn = mapped_before.take();
        let (mapped_now, next_turn) = mpsc::channel::<()>();
        *mapped_before = Some(next_turn);
        let task = tokio::task::spawn_blocking(move || {
            // Parsing needs nothing from the chunk before, so it overlaps with its mapping.
            let parsed = parse_all(&mapped);
            if let Some(turn) = turn {
                let _ = turn.recv(); // Err once the chunk before is mapped: its sender is gone
            }
            let mut prepared = fhir.prepare_parsed(&who, &mapped, parsed, false);
            drop(mapped_now);
            // An import holds what waits itself, not at commit (`hold` false), so the parsed
            // resources go here, on the thread that made them: freeing another thread's memory
            // costs more.
            prepared.placed = Vec::new();
            prepared
        });
        (gathered, Some(Preparing { entries, task }))
    }

    /// Writes one prepared chunk of an import; returns once its events are durable.
    async fn write_chunk(&self, caller: &Caller, preparing: Preparing) -> Written {
        let Preparing { entries, task } = preparing;
        match task.await {
            Ok(prepared) => {
                let (outcomes, publishing) = self.commit_durable(caller, prepared, false).await;
                Written { entries, outcomes, publishing: Some(publishing) }
            }
            // Mapping panicked: a bug, reported for every line of the chunk, not a lost chunk.
            Err(e) => {
                tracing::error!(error = %e, "mapping a chunk failed");
                let issue = Issue::new(IssueType::Exception, "", "INTERNAL: mapping this line failed");
                let outcomes = entries
                    .iter()
                    .map(|_| EntryOutcome { issues: vec![issue.clone()], ..Default::default() })
                    .collect();
                Written { entries, outcomes, publishing: None }
            }
        }
    }

    /// Waits until a written chunk is in the read model and adds it to the summary; lines that
    /// wait for a reference go to `held`.
    async fn finish_chunk<F>(
        &self,
        written: Written,
        summary: &mut ImportSummary,
        held: &mut Vec<RawEntry>,
        progress: &mut F,
    ) where
        F: FnMut(&ImportSummary, &[FailedLine]),
    {
        let Written { entries, mut outcomes, publishing } = written;
        if let Some(publishing) = publishing {
            self.publish(publishing, &entries, &mut outcomes).await;
        }
        // The mapping thread has let go of its share by now: the lines are moved, not copied.
        let entries = Arc::try_unwrap(entries).unwrap_or_else(|shared| shared.as_ref().clone());
        let mut failed = Vec::new();
        for (e, o) in entries.into_iter().zip(outcomes) {
            summary.events_appended += o.appended as u64;
            summary.duplicates_skipped += o.duplicates as u64;
            if let Some(type_name) = o.skipped {
                *summary.skipped.entry(type_name).or_default() += 1;
                continue;
            }
            if o.ok() {
                continue;
            }
            if waits(&o.issues) {
                held.push(e);
            } else {
                summary.failed += 1;
                failed.push(FailedLine { line: e.path, issues: o.issues });
            }
        }
        progress(summary, &failed);
    }
}

/// Reads up to `chunk` non-blank lines.
async fn gather<I>(lines: &mut Enumerate<I>, chunk: usize) -> Gathered
where
    I: futures::Stream<Item = std::io::Result<String>> + Unpin,
{
    let mut gathered = Gathered { entries: Vec::with_capacity(chunk), unreadable: Vec::new(), end: false };
    while gathered.entries.len() < chunk {
        let Some((n, line)) = lines.next().await else {
            gathered.end = true;
            break;
        };
        let at = format!("line {}", n + 1);
        match line {
            Ok(l) if l.trim().is_empty() => {}
            Ok(l) => gathered.entries.push(RawEntry { path: at, full_url: None, json: l, request: None }),
            Err(e) => gathered
                .unreadable
                .push(FailedLine { line: at, issues: vec![Issue::new(IssueType::Structure, "", e.to_string())] }),
        }
    }
    gathered
}
