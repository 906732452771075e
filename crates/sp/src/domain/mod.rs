//! What the agent decides, without I/O: which offers fit the provider's policy and why the
//! others do not ([`policy`]), where each piece of work is in its life and the one machine that
//! moves it ([`work`]), and what a downloaded piece must be to be accepted ([`piece`]).
//!
//! Nothing here reads a clock, a chain, a disk or a socket: the adapters (`chain`, `store`,
//! `fetch`, `sealer`, `api`) gather the facts, call these functions, and carry out what they
//! return.

pub mod origin;
pub mod piece;
pub mod policy;
pub mod work;

pub use piece::{ExpectedPiece, PieceMismatch};
pub use policy::{Load, Offer, OfferSource, Policy, Skip};
pub use work::{Deal, Input, Refused, WorkKind, WorkState};

/// A miner actor's ID (`f0…`, `t0…` on test networks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct MinerId(pub u64);

impl std::fmt::Display for MinerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "f0{}", self.0)
    }
}

/// A miner ID that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a miner ID (f0…, t0… or a number)")]
pub struct BadMinerId(pub String);

impl std::str::FromStr for MinerId {
    type Err = BadMinerId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix("f0").or_else(|| s.strip_prefix("t0")).unwrap_or(s);
        // `f00` is not an ID address; `f0` alone neither. Leading zeros are not canonical.
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadMinerId(s.to_owned()));
        }
        if digits.len() > 1 && digits.starts_with('0') {
            return Err(BadMinerId(s.to_owned()));
        }
        digits.parse().map(Self).map_err(|_| BadMinerId(s.to_owned()))
    }
}

/// Milliseconds since the Unix epoch (the adapters' clock, passed into the domain).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::MinerId;

    #[test]
    fn miner_ids_parse_in_every_usual_spelling() {
        assert_eq!("f01000".parse::<MinerId>(), Ok(MinerId(1000)));
        assert_eq!("t01000".parse::<MinerId>(), Ok(MinerId(1000)));
        assert_eq!("1000".parse::<MinerId>(), Ok(MinerId(1000)));
        assert_eq!("f00".parse::<MinerId>(), Ok(MinerId(0)));
        for bad in ["", "f0", "f1abc", "f0-1", "f001", "f0 1", "f099999999999999999999"] {
            assert!(bad.parse::<MinerId>().is_err(), "{bad:?}");
        }
        assert_eq!(MinerId(1002).to_string(), "f01002");
    }
}
