//! Access log (filled in by helper).
