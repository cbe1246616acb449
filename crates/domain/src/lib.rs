//! forlop's domain: care-pathway events, the commands that record them and the rules they obey.
//!
//! Pure and synchronous: no storage, no runtime, no GraphQL. Everything here is tested without I/O.

pub mod commands;
pub mod decisions;
pub mod error;
pub mod events;
pub mod field_check;
pub mod national_id;
pub mod stream;
pub mod stream_state;
pub mod text;
pub mod time_codec;
pub mod types;

pub use commands::{Command, NewId};
pub use decisions::decide;
pub use error::DomainError;
pub use events::{DecodeError, Event, Timestamp};
pub use stream::StreamRef;
pub use stream_state::{References, StreamState};
pub use types::*;
