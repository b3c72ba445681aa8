//! The notification-suppression rule shared by both ring protocols: after
//! publishing an index that moved from `old` to `new`, send an event only if
//! the index crossed the threshold `event` the peer asked for, i.e. `event`
//! lies in `(old, new]` in wrapping u32 arithmetic.

/// True if moving an index from `old` to `new` crosses the peer's `event`
/// threshold, so the peer asked to be woken.
#[inline]
pub fn crossed(new: u32, old: u32, event: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

#[cfg(test)]
mod tests {
    use super::crossed;

    #[test]
    fn crossing_rule() {
        assert!(crossed(5, 4, 5));
        assert!(crossed(8, 0, 1));
        assert!(!crossed(8, 0, 9));
        assert!(!crossed(4, 4, 4));
        assert!(crossed(3, u32::MAX - 1, 1));
        assert!(!crossed(3, u32::MAX - 1, 4));
    }
}
