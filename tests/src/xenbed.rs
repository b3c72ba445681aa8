//! Nested Xen test bed harness.
