//! National identity numbers (filled in by helper).
