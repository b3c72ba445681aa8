//! Binary system table (placeholder until the module lands).
