//! xenstore client.
