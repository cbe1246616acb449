//! The NDJSON form of the log: one event per line with its full envelope, in global order.
//! Import appends each event under its original id and recording time, so importing an export
//! into an empty store reproduces positions and hashes exactly, and importing twice adds nothing.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::Context;
use forlop_store::{EventStore, ExpectedVersion, Metadata, NewEvent};

/// One line of an export: the backup's event line, so a segment file is an export too.
pub use forlop_backup::EventLine as Line;

pub async fn export(store: &dyn EventStore, out: &mut impl Write) -> anyhow::Result<u64> {
    let progress = crate::progress::bar(Some(store.committed()), "exporting events");
    let mut from = 0;
    loop {
        let page = store.read_all(from, 4096).await?;
        let Some(last) = page.last() else { break };
        from = last.position + 1;
        progress.inc(page.len() as u64);
        for e in page {
            serde_json::to_writer(&mut *out, &Line::from_event(e).map_err(anyhow::Error::msg)?)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    progress.finish_and_clear();
    Ok(from)
}

/// Each non-empty line of the file, parsed, with its line number.
fn lines(path: &Path) -> anyhow::Result<impl Iterator<Item = anyhow::Result<(usize, Line)>>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(std::io::BufReader::new(file).lines().enumerate().filter_map(|(i, line)| {
        let n = i + 1;
        match line {
            Err(e) => Some(Err(anyhow::Error::new(e).context(format!("line {n}")))),
            Ok(l) if l.trim().is_empty() => None,
            Ok(l) => Some(
                serde_json::from_str::<Line>(&l)
                    .map(|x| (n, x))
                    .with_context(|| format!("line {n}: not an exported event")),
            ),
        }
    }))
}

/// Checks the whole file before anything is appended: positions from 0 without gaps, stream
/// versions from 0 without gaps, and every hash recomputed along the chain. Streams the file,
/// keeping only each stream's last version. Returns the number of events.
pub fn verify_file(path: &Path) -> anyhow::Result<u64> {
    let mut versions: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let (mut previous, mut next) = (forlop_store::GENESIS_HASH, 0u64);
    let progress = crate::progress::bar(None, "verifying events");
    for item in lines(path)? {
        let (n, line) = item?;
        progress.inc(1);
        anyhow::ensure!(line.position == next, "line {n}: position {} where {next} was expected", line.position);
        let expected_version = versions.get(&line.stream).map_or(0, |v| v + 1);
        anyhow::ensure!(
            line.version == expected_version,
            "line {n}: {} version {} where {expected_version} was expected",
            line.stream,
            line.version
        );
        let hash = forlop_store::event_hash(&previous, &line.to_recorded()).with_context(|| format!("line {n}"))?;
        let found = line.hash.to_ascii_lowercase();
        let computed = forlop_store::to_hex(&hash);
        anyhow::ensure!(
            found == computed,
            "line {n}: hash does not match the chain: expected {computed}, found {found}"
        );
        versions.insert(line.stream, line.version);
        previous = hash;
        next += 1;
    }
    progress.finish_and_clear();
    Ok(next)
}

/// Appends the events of an export. Unless `trust_unverified`, the file is verified first and
/// nothing is appended if any line fails. Events the store already holds (a resumed import) are
/// checked against the store's chain and skipped, so a longer export over a shorter earlier import
/// appends exactly the missing tail, at the same positions and with the same hashes.
/// Returns (events read, events newly written).
pub async fn import(store: &dyn EventStore, path: &Path, trust_unverified: bool) -> anyhow::Result<(u64, u64)> {
    if !trust_unverified {
        verify_file(path)?;
    }
    let held = store.committed();
    if held > 0 {
        // The store must hold exactly the file's prefix: compare the last held event's hash.
        let last = store.read_all(held - 1, 1).await?;
        let head = last.first().map(|e| forlop_store::to_hex(&e.hash)).unwrap_or_default();
        let matches = lines(path)?
            .filter_map(Result::ok)
            .find(|(_, l)| l.position == held - 1)
            .is_some_and(|(_, l)| l.hash.eq_ignore_ascii_case(&head));
        anyhow::ensure!(matches, "the store's {held} events are not a prefix of this file; nothing was imported");
    }
    let (mut read, mut written) = (0, 0);
    // Consecutive events of one stream go in one append, as they were most likely written.
    let mut pending: Option<(String, Vec<NewEvent>)> = None;
    let flush = |batch: Option<(String, Vec<NewEvent>)>| async {
        let Some((stream, events)) = batch else { return anyhow::Ok(0) };
        let n = events.len() as u64;
        let r = store
            .append(&stream, ExpectedVersion::Any, events)
            .await
            .with_context(|| format!("appending to {stream}"))?;
        Ok(if r.deduplicated { 0 } else { n })
    };
    let progress = crate::progress::bar(None, "importing events");
    for item in lines(path)? {
        let (_, l) = item?;
        read += 1;
        progress.inc(1);
        if l.position < held {
            continue;
        }
        let event = NewEvent {
            id: l.id,
            event_type: l.event_type,
            schema_version: l.schema_version,
            occurred_at: l.occurred_at,
            payload: l.payload.get().as_bytes().to_vec(),
            metadata: Metadata { actor: l.actor, correlation_id: l.correlation_id, causation_id: l.causation_id },
            recorded_at: Some(l.recorded_at),
        };
        match &mut pending {
            Some((stream, events)) if *stream == l.stream => events.push(event),
            _ => {
                written += flush(pending.take()).await?;
                pending = Some((l.stream, vec![event]));
            }
        }
    }
    written += flush(pending.take()).await?;
    progress.finish_and_clear();
    Ok((read, written))
}
