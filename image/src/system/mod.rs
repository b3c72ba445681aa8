//! The static system description (placeholder until the module lands).
