//! Read-model checkpoints: a start loads the newest checkpoint that matches the log and replays
//! only the tail. A checkpoint is trusted only if the log still holds, at the checkpoint's
//! position, the event whose hash it recorded; anything else (another log, a truncated or
//! tampered log, an undecodable or older-format file) is ignored with a warning, and the read
//! model is rebuilt from position 0.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

use forlop_projections::read_model::{HashMap, PatientView, ServiceView, TherapistView};
use forlop_projections::ReadModel;
use forlop_store::{EventStore, Hash};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::owners::OwnerIndex;

/// The checkpoint's format version, bumped whenever the read model's shape changes or the
/// checkpoints an earlier build wrote cannot be trusted: a checkpoint of any other version is
/// ignored and the log replayed from 0.
const FORMAT: u32 = 6;
const MAGIC: &[u8; 8] = b"FORLOPRM";
/// Patients per frame: frames keep the memory a checkpoint takes to write or load to a few
/// megabytes, where one buffer of the whole file would be as large as the model.
const PATIENTS_PER_FRAME: usize = 4096;

#[derive(Serialize, Deserialize)]
struct Header {
    format: u32,
    /// Events folded (the next position expected).
    position: u64,
    /// Chain hash of the event at `position - 1` (zeros when empty).
    head_hash: Hash,
}

/// Everything but the patients (the per-service indexes are derived: `ReadModel::reindex`).
#[derive(Serialize, Deserialize)]
struct Rest {
    services: HashMap<Uuid, ServiceView>,
    therapists: HashMap<Uuid, TherapistView>,
}

/// Layout: magic, then frames of `[u32 LE length][postcard]`: the header, the rest, patients in
/// frames of up to `PATIENTS_PER_FRAME`, and an empty frame that ends the file.
fn frame(out: &mut impl Write, body: &impl Serialize, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.clear();
    let bytes = postcard::to_io(body, &mut *buf).map_err(std::io::Error::other)?;
    out.write_all(&(bytes.len() as u32).to_le_bytes())?;
    out.write_all(bytes)
}

/// Reads the next frame into `buf`; an empty slice ends the file. A damaged length must not
/// make a start allocate gigabytes: the buffer grows only as bytes actually arrive.
fn next_frame<'b>(input: &mut impl Read, buf: &'b mut Vec<u8>) -> std::io::Result<&'b [u8]> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let len = u64::from(u32::from_le_bytes(len));
    buf.clear();
    input.take(len).read_to_end(buf)?;
    if buf.len() as u64 != len {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "truncated frame"));
    }
    Ok(buf)
}

/// Writes the model with the hash of its last folded event, atomically: a temporary file,
/// fsynced, then renamed over the old checkpoint.
pub fn write(path: &Path, model: &ReadModel, head_hash: Hash) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
        let mut buf = Vec::new();
        out.write_all(MAGIC)?;
        frame(&mut out, &Header { format: FORMAT, position: model.position, head_hash }, &mut buf)?;
        let rest = Rest { services: model.services.clone(), therapists: model.therapists.clone() };
        frame(&mut out, &rest, &mut buf)?;
        let patients: Vec<&PatientView> = model.patients.values().map(|p| &**p).collect();
        for chunk in patients.chunks(PATIENTS_PER_FRAME) {
            frame(&mut out, &chunk, &mut buf)?;
        }
        out.write_all(&0u32.to_le_bytes())?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A decoded checkpoint, not yet checked against the log, with the owner index derived from it
/// (built while the event log opens, off a start's critical path).
pub struct Decoded {
    header: Header,
    model: ReadModel,
    owners: OwnerIndex,
}

/// A checkpoint being decoded on a thread of its own, started before the event log is opened:
/// opening a large sled store (it replays its own log) and decoding the checkpoint then overlap.
#[derive(Default)]
pub struct Preload(std::sync::Mutex<Option<std::thread::JoinHandle<Option<Decoded>>>>);

impl Preload {
    /// Starts decoding `path` if it exists.
    pub fn start(path: &Path) -> Preload {
        if !path.exists() {
            return Preload::default();
        }
        let path = path.to_owned();
        let thread = std::thread::Builder::new().name("forlop-checkpoint".into()).spawn(move || read(&path));
        Preload(std::sync::Mutex::new(thread.ok()))
    }

    /// The decoding's outcome, once it has finished: Some(None) if the checkpoint was unusable
    /// (already reported), None if no decoding was started or its outcome was taken already.
    pub async fn take(&self) -> Option<Option<Decoded>> {
        let thread = self.0.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        Some(tokio::task::spawn_blocking(move || thread.join().ok().flatten()).await.ok().flatten())
    }
}

fn ignored<T>(path: &Path, why: String) -> Option<T> {
    tracing::warn!(path = %path.display(), reason = %why, "checkpoint ignored; replaying the log from 0");
    None
}

/// Decodes the checkpoint at `path` without looking at the log; None (with a warning) if there
/// is none or it is unusable.
pub fn read(path: &Path) -> Option<Decoded> {
    let mut input = match std::fs::File::open(path) {
        Ok(f) => BufReader::with_capacity(1 << 20, f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "checkpoint unreadable; replaying from 0");
            return None;
        }
    };
    let mut magic = [0u8; 8];
    if input.read_exact(&mut magic).is_err() || magic != *MAGIC {
        return ignored(path, "not a checkpoint file".into());
    }
    let mut buf = Vec::new();
    let header: Header = match next_frame(&mut input, &mut buf).map(postcard::from_bytes) {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return ignored(path, format!("undecodable header: {e}")),
        Err(e) => return ignored(path, format!("unreadable header: {e}")),
    };
    if header.format != FORMAT {
        return ignored(path, format!("format {} (this build writes {FORMAT})", header.format));
    }
    match decode_model(&mut input, &mut buf) {
        Ok(mut model) => {
            model.position = header.position;
            // The derived indexes, side by side.
            let (indexes, owners) = std::thread::scope(|scope| {
                let indexes = scope.spawn(|| model.service_indexes());
                let owners = OwnerIndex::of(&model);
                (indexes.join(), owners)
            });
            let Ok(indexes) = indexes else { return ignored(path, "indexing it panicked".into()) };
            (model.episodes_by_service, model.referrals_by_service) = indexes;
            Some(Decoded { header, model, owners })
        }
        Err(e) => ignored(path, format!("undecodable read model: {e}")),
    }
}

/// The decoded checkpoint's model if `store`'s log still holds, at its position, the event whose
/// hash it recorded; None (with a warning) otherwise.
pub async fn check(decoded: Decoded, path: &Path, store: &Arc<dyn EventStore>) -> Option<ReadModel> {
    check_with_owners(decoded, path, store).await.map(|(model, _)| model)
}

/// `check`, keeping the owner index built with the model.
pub(crate) async fn check_with_owners(
    decoded: Decoded,
    path: &Path,
    store: &Arc<dyn EventStore>,
) -> Option<(ReadModel, OwnerIndex)> {
    let Decoded { header, model, owners } = decoded;
    if header.position > store.committed() {
        return ignored(path, format!("it reflects {} events, the log holds {}", header.position, store.committed()));
    }
    if header.position > 0 {
        let matches = match store.read_all(header.position - 1, 1).await {
            Ok(events) => events.first().is_some_and(|e| e.hash == header.head_hash),
            Err(e) => return ignored(path, format!("reading the log: {e}")),
        };
        if !matches {
            return ignored(path, format!("the log's event at {} has another hash", header.position - 1));
        }
    }
    Some((model, owners))
}

/// The checkpoint at `path`, if it matches `store`'s log; None (with a warning) otherwise.
pub async fn load(path: &Path, store: &Arc<dyn EventStore>) -> Option<ReadModel> {
    load_with_owners(path, store).await.map(|(model, _)| model)
}

pub(crate) async fn load_with_owners(path: &Path, store: &Arc<dyn EventStore>) -> Option<(ReadModel, OwnerIndex)> {
    let owned = path.to_owned();
    let decoded = tokio::task::spawn_blocking(move || read(&owned)).await.ok().flatten()?;
    check_with_owners(decoded, path, store).await
}

/// Decodes the frames after the header. Patients decode on a second thread while this one
/// reads frames and folds decoded patients into the map: a start on two cores takes about half
/// the time of one thread doing everything.
fn decode_model(input: &mut (impl Read + Send), buf: &mut Vec<u8>) -> Result<ReadModel, String> {
    let rest: Rest =
        postcard::from_bytes(next_frame(input, buf).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let mut model = ReadModel { services: rest.services, therapists: rest.therapists, ..ReadModel::default() };
    let (frames, to_decode) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
    let (decoded, to_insert) = std::sync::mpsc::sync_channel::<Result<Vec<PatientView>, String>>(4);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for frame in to_decode {
                let patients = postcard::from_bytes::<Vec<PatientView>>(&frame).map_err(|e| e.to_string());
                if decoded.send(patients).is_err() {
                    return;
                }
            }
        });
        let reader = scope.spawn(move || -> Result<(), String> {
            loop {
                let mut frame = Vec::new();
                if next_frame(input, &mut frame).map_err(|e| e.to_string())?.is_empty() {
                    return Ok(());
                }
                if frames.send(frame).is_err() {
                    return Ok(()); // the decoder stopped at an error, reported below
                }
            }
        });
        for patients in to_insert {
            model.patients.extend(patients?.into_iter().map(|p| (p.id, Arc::new(p))));
        }
        reader.join().map_err(|_| "checkpoint reader panicked".to_string())?
    })?;
    Ok(model)
}
