//! forlop's domain: care-pathway events, the commands that record them and the rules they obey.
//!
//! Pure and synchronous: no storage, no runtime, no GraphQL. Everything here is tested without I/O.

pub mod commands;
pub mod events;
pub mod field_check;
pub mod national_id;
pub mod stream;
pub mod text;
pub mod time_codec;
pub mod types;

pub use commands::{decide, Command, DomainError, NewId, References, StreamState};
pub use events::{DecodeError, Event, Timestamp};
pub use stream::StreamRef;
pub use types::*;
