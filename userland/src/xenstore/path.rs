//! What xenstore accepts as a path, a value and a watch token.
//!
//! Rules (docs/misc/xenstore.txt, xenstore_lib): a path is absolute (`/local/domain/3/...`, at most
//! [`ABS_PATH_MAX`] bytes) or relative to the caller's home `/local/domain/<domid>` (at most
//! [`REL_PATH_MAX`]); components use `[A-Za-z0-9_@-]`, separated by single `/`, with no trailing
//! `/` except the root itself. Watches may also name the special paths `@releaseDomain` and
//! `@introduceDomain`. Checking on our side turns a bad argument into a clear error instead of an
//! `EINVAL` round trip, and keeps every request within the payload limit.

use super::wire::{Error, XENSTORE_PAYLOAD_MAX};

pub const ABS_PATH_MAX: usize = 3072;
pub const REL_PATH_MAX: usize = 2048;

fn valid_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'/' | b'_' | b'@')
}

/// Checks a path for a non-watch request.
pub fn check_path(p: &str) -> Result<(), Error> {
    let b = p.as_bytes();
    let max = if b.first() == Some(&b'/') {
        ABS_PATH_MAX
    } else {
        REL_PATH_MAX
    };
    if b.is_empty() || b.len() > max || !b.iter().all(|&c| valid_char(c)) {
        return Err(Error::BadPath);
    }
    if p != "/" && (p.ends_with('/') || p.contains("//")) {
        return Err(Error::BadPath);
    }
    Ok(())
}

/// Checks a path for WATCH/UNWATCH: a normal path or a special `@` path.
pub fn check_watch_path(p: &str) -> Result<(), Error> {
    if p == "@releaseDomain" || p == "@introduceDomain" {
        return Ok(());
    }
    check_path(p)
}

/// Checks a watch token: non-empty and NUL-free (it travels NUL-terminated).
pub fn check_token(t: &str) -> Result<(), Error> {
    if t.is_empty() || t.as_bytes().contains(&0) {
        return Err(Error::BadToken);
    }
    Ok(())
}

/// Checks that payload `parts` fit in one message.
pub fn check_payload(parts: &[&[u8]]) -> Result<(), Error> {
    let n: usize = parts.iter().map(|p| p.len()).sum();
    if n > XENSTORE_PAYLOAD_MAX {
        return Err(Error::TooLarge);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_paths() {
        for p in [
            "/",
            "/local/domain/0/backend/vif/3/0",
            "domid",
            "device/vif/0/state",
            "backend/vif/1/0/feature-rx-copy",
            "a_b@c",
        ] {
            assert_eq!(check_path(p), Ok(()), "{p}");
        }
        check_watch_path("@releaseDomain").unwrap();
    }

    #[test]
    fn bad_paths() {
        let long_abs = std::format!("/{}", "a".repeat(ABS_PATH_MAX));
        let long_rel = "a".repeat(REL_PATH_MAX + 1);
        for p in [
            "",
            "/local//domain",
            "/local/domain/",
            "dev ice",
            "a\0b",
            "ä",
            "a.b",
            long_abs.as_str(),
            long_rel.as_str(),
        ] {
            assert_eq!(check_path(p), Err(Error::BadPath), "{p:?}");
        }
        assert_eq!(check_path(&"a".repeat(REL_PATH_MAX)), Ok(()));
        assert_eq!(
            check_path(&std::format!("/{}", "a".repeat(ABS_PATH_MAX - 1))),
            Ok(())
        );
        assert_eq!(
            check_path("@releaseDomain"),
            Ok(()),
            "an @ name is a valid relative path"
        );
        assert_eq!(check_watch_path("@other/"), Err(Error::BadPath));
        assert_eq!(check_token(""), Err(Error::BadToken));
        assert_eq!(check_token("a\0"), Err(Error::BadToken));
        assert_eq!(check_payload(&[&[0; 4000], &[0; 96]]), Ok(()));
        assert_eq!(check_payload(&[&[0; 4000], &[0; 97]]), Err(Error::TooLarge));
    }
}
