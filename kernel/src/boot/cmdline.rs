//! The kernel command line: whitespace-separated words, `nc2dd.<key>=<value>` options are ours.
//!
//! Unknown words are ignored (the loader may add its own); an option given twice takes the last.

/// Value of option `nc2dd.<key>`, if present.
pub fn option<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_ascii_whitespace()
        .rev()
        .filter_map(|w| w.strip_prefix("nc2dd."))
        .filter_map(|w| w.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::option;

    #[test]
    fn finds_our_options_only() {
        let c = "console=ttyS0 nc2dd.selftest=pagefault test=x nc2dd.x=1 nc2dd.x=2";
        assert_eq!(option(c, "selftest"), Some("pagefault"));
        assert_eq!(option(c, "test"), None);
        assert_eq!(option(c, "x"), Some("2"));
        assert_eq!(option("", "x"), None);
        assert_eq!(option("nc2dd.flag", "flag"), None);
    }
}
