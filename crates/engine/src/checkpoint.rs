//! Read-model checkpoints: a start loads the newest checkpoint that matches the log and replays
//! only the tail. A checkpoint is trusted only if the log still holds, at the checkpoint's
//! position, the event whose hash it recorded; anything else (another log, a truncated or
//! tampered log, an undecodable or older-format file) is ignored with a warning, and the read
//! model is rebuilt from position 0.

use std::path::Path;
use std::sync::Arc;

use forlop_projections::ReadModel;
use forlop_store::{EventStore, Hash};
use serde::{Deserialize, Serialize};

/// Bumped whenever the read model's shape changes: an older checkpoint is then ignored.
const FORMAT: u32 = 2;
const MAGIC: &[u8; 8] = b"FORLOPRM";

#[derive(Serialize, Deserialize)]
struct Header {
    format: u32,
    /// Events folded (the next position expected).
    position: u64,
    /// Chain hash of the event at `position - 1` (zeros when empty).
    head_hash: Hash,
}

/// Encodes the model with the hash of its last folded event.
pub fn encode(model: &ReadModel, head_hash: Hash) -> Result<Vec<u8>, String> {
    let header = Header { format: FORMAT, position: model.position, head_hash };
    let mut out = MAGIC.to_vec();
    out = postcard::to_extend(&header, out).map_err(|e| e.to_string())?;
    postcard::to_extend(model, out).map_err(|e| e.to_string())
}

/// Writes atomically: a temporary file, fsynced, then renamed over the old checkpoint.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The checkpoint at `path`, if it matches `store`'s log; None (with a warning) otherwise.
pub async fn load(path: &Path, store: &Arc<dyn EventStore>) -> Option<ReadModel> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "checkpoint unreadable; replaying from 0");
            return None;
        }
    };
    let ignore = |why: String| {
        tracing::warn!(path = %path.display(), reason = %why, "checkpoint ignored; replaying the log from 0");
        None
    };
    let Some(body) = bytes.strip_prefix(MAGIC.as_slice()) else { return ignore("not a checkpoint file".into()) };
    let (header, rest): (Header, &[u8]) = match postcard::take_from_bytes(body) {
        Ok(x) => x,
        Err(e) => return ignore(format!("undecodable header: {e}")),
    };
    if header.format != FORMAT {
        return ignore(format!("format {} (this build writes {FORMAT})", header.format));
    }
    if header.position > store.committed() {
        return ignore(format!("it reflects {} events, the log holds {}", header.position, store.committed()));
    }
    if header.position > 0 {
        let matches = match store.read_all(header.position - 1, 1).await {
            Ok(events) => events.first().is_some_and(|e| e.hash == header.head_hash),
            Err(e) => return ignore(format!("reading the log: {e}")),
        };
        if !matches {
            return ignore(format!("the log's event at {} has another hash", header.position - 1));
        }
    }
    match postcard::from_bytes::<ReadModel>(rest) {
        Ok(mut model) if model.position == header.position => {
            model.reindex();
            Some(model)
        }
        Ok(_) => ignore("header and model disagree on the position".into()),
        Err(e) => ignore(format!("undecodable read model: {e}")),
    }
}
