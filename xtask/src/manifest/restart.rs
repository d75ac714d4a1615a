//! A VM's restart policy: `restart` and `max_restarts` of its `[[vm]]`
//! table, checked (the monitor's bundle properties `restart` and
//! `max-restarts`).

use anyhow::Result;
use std::ops::Range;
use toml::Spanned;

/// The largest `max_restarts` (a fault campaign of 10^4 crashes).
pub const MAX_RESTARTS: u32 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    Never,
    OnCrash,
    /// After a crash or a power-off (a fault campaign's attacker).
    Always,
}

impl Restart {
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::Never => "never",
            Restart::OnCrash => "on-crash",
            Restart::Always => "always",
        }
    }
}

/// The policy and its bound (None: the monitor's default) of VM `vm`.
pub(super) fn restart(
    policy: Option<&Spanned<String>>,
    max: Option<&Spanned<u32>>,
    vm: &str,
    err: &impl Fn(Range<usize>, &str, &str, String) -> anyhow::Error,
) -> Result<(Restart, Option<u32>)> {
    let restart = match policy.map(|r| (r.get_ref().as_str(), r.span())) {
        None | Some(("never", _)) => Restart::Never,
        Some(("on-crash", _)) => Restart::OnCrash,
        Some(("always", _)) => Restart::Always,
        Some((other, span)) => {
            return Err(err(span, vm, "restart", format!("`{other}`: expected \"never\", \"on-crash\" or \"always\"")))
        }
    };
    let max_restarts = match max {
        Some(m) if restart == Restart::Never => {
            return Err(err(m.span(), vm, "max_restarts", "needs `restart = \"on-crash\"` or \"always\"".into()))
        }
        Some(m) if !(1..=MAX_RESTARTS).contains(m.get_ref()) => {
            return Err(err(m.span(), vm, "max_restarts", format!("{}: expected 1..={MAX_RESTARTS}", m.get_ref())))
        }
        m => m.map(|m| *m.get_ref()),
    };
    Ok((restart, max_restarts))
}
