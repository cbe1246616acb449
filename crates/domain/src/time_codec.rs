//! How clinical times are encoded: RFC 3339 text in JSON (event payloads, exports, byte for
//! byte what chrono writes), and seconds plus nanoseconds as integers in binary formats (the
//! read-model checkpoint), where parsing millions of timestamps as text dominated a restart.
//! Use with `#[serde(with = "crate::time_codec")]` (or `::option`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use chrono::{DateTime, Utc};

/// A point in clinical or recording time, in UTC.
pub type Timestamp = DateTime<Utc>;

pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        t.serialize(s)
    } else {
        (t.timestamp(), t.timestamp_subsec_nanos()).serialize(s)
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
    if d.is_human_readable() {
        Timestamp::deserialize(d)
    } else {
        let (secs, nanos) = <(i64, u32)>::deserialize(d)?;
        Timestamp::from_timestamp(secs, nanos).ok_or_else(|| serde::de::Error::custom("time out of range"))
    }
}

/// A timestamp that encodes as this module says, for places `with` cannot reach (tuples).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Compact(#[serde(with = "self")] pub Timestamp);

pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        t.map(Compact).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        Ok(Option::<Compact>::deserialize(d)?.map(|c| c.0))
    }
}
