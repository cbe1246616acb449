//! The tamper-evident chain: each event's hash covers the previous hash and its canonical bytes.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// The hash the first event chains from.
pub const GENESIS_HASH: Hash = [0; 32];

pub fn chain_hash(previous: &Hash, canonical: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(previous);
    h.update(canonical);
    h.finalize().into()
}

/// Lower-case hex, as hashes are shown to people.
pub fn to_hex(hash: &Hash) -> String {
    hex::encode(hash)
}
