//! The description as TOML gives it: serde types that keep every value's position so that the
//! validator can point at the offending line. Nothing here is checked beyond TOML syntax, the
//! key names (unknown keys are errors) and value types; integers are taken as `i64` so that the
//! validator, not serde, reports a negative or oversized number with a useful message.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::SystemError;

type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawFile {
    pub system: S<RawSystem>,
    #[serde(default)]
    pub task: Vec<S<RawTask>>,
    #[serde(default)]
    pub channel: Vec<S<RawChannel>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawSystem {
    pub name: S<String>,
    pub memory_budget: S<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawTask {
    pub name: S<String>,
    pub server: S<String>,
    pub priority: S<i64>,
    pub supervisor: Option<S<bool>>,
    pub stack: S<i64>,
    pub heap: S<i64>,
    pub dma: Option<S<i64>>,
    #[serde(default)]
    pub notifications: BTreeMap<String, S<i64>>,
    pub fault: Option<S<String>>,
    pub timer: Option<S<String>>,
    #[serde(default)]
    pub device: Vec<S<RawDevice>>,
    pub xen: Option<S<RawXen>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawDevice {
    pub name: S<String>,
    pub pci: Option<S<Vec<S<String>>>>,
    pub bdf: Option<S<String>>,
    pub bars: S<Vec<S<i64>>>,
    #[serde(default)]
    pub msix: Option<S<Vec<S<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawXen {
    pub event: S<String>,
    pub grant_window: S<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawChannel {
    pub name: S<String>,
    pub size: S<i64>,
    pub ends: S<Vec<S<RawEnd>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawEnd {
    pub task: S<String>,
    pub kick: S<String>,
}

/// Parses `text`; syntax, unknown keys, missing keys and wrong types become a `SystemError` at
/// the position the TOML parser reports (its multi-line messages are joined with "; ").
pub(super) fn parse(text: &str, file_name: &str) -> Result<RawFile, SystemError> {
    toml::from_str(text).map_err(|e| {
        let message = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        match e.span() {
            Some(span) => SystemError::at(file_name, text, span, message),
            None => SystemError::without_line(file_name, message),
        }
    })
}
