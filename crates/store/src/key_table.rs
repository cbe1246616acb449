//! Key table (filled in by helper).
