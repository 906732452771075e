//! The IPFS Pinning Service API's objects, checked: pins, their states, list filters, tokens.
//!
//! A pin made through the API is a job like a request made on chain — it goes through the same
//! fetch → pack pipeline — under its own source, [`super::JobSource::PinningApi`] (per
//! account), with nothing to report on chain. This module is pure: parsing and validation only;
//! the store keeps the records and the API serves them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::JobState;

/// Longest pin name the spec allows (characters).
pub const MAX_NAME: usize = 255;
/// Most origins (and delegates) per pin.
pub const MAX_ORIGINS: usize = 20;
/// Most `meta` entries.
pub const MAX_META: usize = 1000;
/// Most CIDs in a `cid` filter.
pub const MAX_CID_FILTER: usize = 10;
/// Largest page.
pub const MAX_LIMIT: u32 = 1000;
/// Page size when none is asked for.
pub const DEFAULT_LIMIT: u32 = 10;

/// A pin's state as the spec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PinState {
    /// Waiting for a worker.
    Queued,
    /// Being fetched.
    Pinning,
    /// The whole DAG is held.
    Pinned,
    /// Will not be pinned.
    Failed,
}

impl PinState {
    /// The spec's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Pinning => "pinning",
            Self::Pinned => "pinned",
            Self::Failed => "failed",
        }
    }

    /// Reads the spec's name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Queued, Self::Pinning, Self::Pinned, Self::Failed]
            .into_iter()
            .find(|state| state.as_str() == s)
    }

    /// The job's state as the API shows it.
    pub fn of(status: JobState) -> Self {
        match status {
            JobState::Queued => Self::Queued,
            JobState::Fetching => Self::Pinning,
            JobState::Pinned | JobState::Packed | JobState::Reported => Self::Pinned,
            _ => Self::Failed,
        }
    }

    /// The job states shown as this state.
    pub fn job_states(self) -> &'static [JobState] {
        match self {
            Self::Queued => &[JobState::Queued],
            Self::Pinning => &[JobState::Fetching],
            Self::Pinned => &[JobState::Pinned, JobState::Packed, JobState::Reported],
            Self::Failed => {
                &[JobState::Failing, JobState::Failed, JobState::Quarantined, JobState::Cancelled]
            }
        }
    }
}

/// How `name` is matched in a list filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextMatch {
    /// Whole name, case-sensitive.
    #[default]
    Exact,
    /// Whole name, case-insensitive (ASCII).
    Iexact,
    /// Substring, case-sensitive.
    Partial,
    /// Substring, case-insensitive (ASCII).
    Ipartial,
}

impl TextMatch {
    /// Reads the spec's name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "exact" => Self::Exact,
            "iexact" => Self::Iexact,
            "partial" => Self::Partial,
            "ipartial" => Self::Ipartial,
            _ => return None,
        })
    }
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// List and read pins.
    Read,
    /// Also create, replace and delete them.
    Write,
    /// Create uploads only (a session made by Sign-In with Ethereum).
    Upload,
}

impl Scope {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Upload => "upload",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            "upload" => Some(Self::Upload),
            _ => None,
        }
    }
}

/// Who is calling: a token's account and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The account; pins belong to it.
    pub account: String,
    /// What the token allows.
    pub scope: Scope,
}

/// A `Pin` object as a client sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The root CID, as text.
    pub cid: String,
    /// An optional name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Multiaddrs that hold the content.
    #[serde(default)]
    pub origins: Vec<String>,
    /// Free-form string metadata.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
}

/// A pin that passed [`Pin::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedPin {
    /// The object, as sent.
    pub pin: Pin,
    /// Its CID in binary.
    pub cid_bytes: Vec<u8>,
    /// Its CID's canonical text.
    pub cid_text: String,
}

/// The `meta` entry by which a pin asks for a bucket of its own (`"own"`): its piece is
/// aggregated and dealt alone, not with other pins'.
pub const BUCKET_META: &str = "estuary.bucket";

impl CheckedPin {
    /// Whether the pin asks for a bucket of its own (`meta` `estuary.bucket` is `own`).
    pub fn own_bucket(&self) -> bool {
        self.pin.meta.get(BUCKET_META).is_some_and(|v| v == "own")
    }
}

/// Why a pin or a filter was refused (a 400 answer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid(message: impl Into<String>) -> Invalid {
    Invalid(message.into())
}

/// Parses a CID's text form (v0 base58 or multibase v1) into its bytes and canonical text,
/// refusing codecs and hashes the oracle cannot verify.
pub fn parse_cid_text(text: &str) -> Result<(Vec<u8>, String), Invalid> {
    let cid =
        cid::Cid::try_from(text).map_err(|e| invalid(format!("{text:?} is not a CID: {e}")))?;
    let bytes = cid.to_bytes();
    let info = estuary_dag::parse_cid_bytes(&bytes)
        .map_err(|e| invalid(format!("{text:?} cannot be pinned: {e}")))?;
    Ok((bytes, info.text))
}

impl Pin {
    /// Checks the object against the spec's bounds and that its CID can be pinned.
    pub fn check(self) -> Result<CheckedPin, Invalid> {
        let (cid_bytes, cid_text) = parse_cid_text(&self.cid)?;
        if let Some(name) = &self.name
            && name.chars().count() > MAX_NAME
        {
            return Err(invalid(format!("name is longer than {MAX_NAME} characters")));
        }
        if self.origins.len() > MAX_ORIGINS {
            return Err(invalid(format!("more than {MAX_ORIGINS} origins")));
        }
        for (i, origin) in self.origins.iter().enumerate() {
            if !origin.starts_with('/') || origin.len() > 1024 {
                return Err(invalid(format!("origin {origin:?} is not a multiaddr")));
            }
            if self.origins[..i].contains(origin) {
                return Err(invalid(format!("origin {origin:?} is given twice")));
            }
        }
        if self.meta.len() > MAX_META {
            return Err(invalid(format!("more than {MAX_META} meta entries")));
        }
        Ok(CheckedPin { pin: self, cid_bytes, cid_text })
    }
}

/// A pin object as stored, with its job's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRecord {
    /// Its id.
    pub requestid: String,
    /// The account that made it.
    pub owner: String,
    /// What was asked.
    pub pin: Pin,
    /// When it was made (unix ms, unique).
    pub created_ms: u64,
    /// Its job's state.
    pub status: JobState,
    /// Why it failed, or the last retryable failure (detail for the operator).
    pub error: Option<String>,
    /// The code of a permanent failure.
    pub failure: Option<super::FailureCode>,
    /// Bytes of the pinned DAG.
    pub dag_bytes: Option<u64>,
    /// Piece CID of its packed CAR.
    pub piece_cid: Option<String>,
}

/// `GET /pins` filters, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinQuery {
    /// Only these CIDs (as sent, or their canonical text).
    pub cids: Vec<String>,
    /// Only pins whose name matches.
    pub name: Option<(String, TextMatch)>,
    /// Only pins in these states (all when empty).
    pub statuses: Vec<PinState>,
    /// Only pins created before (unix ms, exclusive).
    pub before_ms: Option<u64>,
    /// Only pins created after (unix ms, exclusive).
    pub after_ms: Option<u64>,
    /// Most pins returned.
    pub limit: u32,
    /// Only pins whose meta has all these entries.
    pub meta: BTreeMap<String, String>,
}

impl Default for PinQuery {
    fn default() -> Self {
        Self {
            cids: Vec::new(),
            name: None,
            statuses: Vec::new(),
            before_ms: None,
            after_ms: None,
            limit: DEFAULT_LIMIT,
            meta: BTreeMap::new(),
        }
    }
}

/// `GET /pins` query parameters as sent.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawPinQuery {
    /// Comma-separated CIDs.
    pub cid: Option<String>,
    /// Name to match.
    pub name: Option<String>,
    /// `exact`, `iexact`, `partial` or `ipartial`.
    #[serde(rename = "match")]
    pub text_match: Option<String>,
    /// Comma-separated states.
    pub status: Option<String>,
    /// RFC 3339 timestamp.
    pub before: Option<String>,
    /// RFC 3339 timestamp.
    pub after: Option<String>,
    /// Page size, 1 to 1000.
    pub limit: Option<String>,
    /// JSON object of strings.
    pub meta: Option<String>,
}

/// Parses an RFC 3339 timestamp into unix milliseconds.
pub fn parse_time(text: &str) -> Result<u64, Invalid> {
    let ts: jiff::Timestamp =
        text.parse().map_err(|e| invalid(format!("{text:?} is not an RFC 3339 time: {e}")))?;
    u64::try_from(ts.as_millisecond()).map_err(|_| invalid(format!("{text:?} is before 1970")))
}

/// Formats unix milliseconds as RFC 3339 in UTC with milliseconds.
pub fn format_time(ms: u64) -> String {
    let ts = i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    format!("{ts:.3}")
}

impl RawPinQuery {
    /// Checks every filter against the spec.
    pub fn check(self) -> Result<PinQuery, Invalid> {
        let mut query = PinQuery::default();
        if let Some(cids) = self.cid {
            if cids.split(',').count() > MAX_CID_FILTER {
                return Err(invalid(format!("more than {MAX_CID_FILTER} CIDs in the filter")));
            }
            for cid in cids.split(',') {
                let (_, canonical) = parse_cid_text(cid)?;
                if !query.cids.contains(&cid.to_owned()) {
                    query.cids.push(cid.to_owned());
                }
                if canonical != cid && !query.cids.contains(&canonical) {
                    query.cids.push(canonical);
                }
            }
        }
        let text_match = match self.text_match.as_deref() {
            None => TextMatch::Exact,
            Some(m) => TextMatch::parse(m).ok_or_else(|| {
                invalid(format!("match must be exact, iexact, partial or ipartial, got {m:?}"))
            })?,
        };
        if let Some(name) = self.name {
            if name.chars().count() > MAX_NAME {
                return Err(invalid(format!("name is longer than {MAX_NAME} characters")));
            }
            query.name = Some((name, text_match));
        }
        if let Some(statuses) = self.status {
            for s in statuses.split(',') {
                let state = PinState::parse(s).ok_or_else(|| {
                    invalid(format!("status must be queued, pinning, pinned or failed, got {s:?}"))
                })?;
                if !query.statuses.contains(&state) {
                    query.statuses.push(state);
                }
            }
        }
        query.before_ms = self.before.as_deref().map(parse_time).transpose()?;
        query.after_ms = self.after.as_deref().map(parse_time).transpose()?;
        if let Some(limit) = self.limit {
            query.limit =
                limit.parse::<u32>().ok().filter(|l| (1..=MAX_LIMIT).contains(l)).ok_or_else(
                    || invalid(format!("limit must be 1 to {MAX_LIMIT}, got {limit:?}")),
                )?;
        }
        if let Some(meta) = self.meta {
            query.meta = serde_json::from_str(&meta)
                .map_err(|e| invalid(format!("meta must be a JSON object of strings: {e}")))?;
        }
        Ok(query)
    }
}

/// A pin API secret: 32 random bytes, hex, prefixed so it is recognisable in a leak scan.
pub fn new_secret() -> String {
    format!("est_{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// What the store keeps of a secret.
pub fn secret_digest(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// A new request id: a random (v4) UUID.
pub fn new_requestid() -> String {
    let mut b = rand::random::<[u8; 16]>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";

    fn pin(cid: &str) -> Pin {
        Pin { cid: cid.into(), name: None, origins: vec![], meta: BTreeMap::new() }
    }

    #[test]
    fn pins_are_checked() {
        assert!(pin(CID).check().is_ok());
        assert!(pin("QmQPeNsJPyVWPFDVHb9hMpRKxHZaoDpT2YRH8DF9eYVw9Z").check().is_ok());
        assert!(pin("not-a-cid").check().is_err());
        assert!(pin("").check().is_err());
        let mut long = pin(CID);
        long.name = Some("é".repeat(256));
        assert!(long.check().is_err());
        let mut ok = pin(CID);
        ok.name = Some("é".repeat(255));
        assert!(ok.check().is_ok());
        let mut twice = pin(CID);
        twice.origins = vec!["/ip4/1.2.3.4/tcp/1".into(), "/ip4/1.2.3.4/tcp/1".into()];
        assert!(twice.check().is_err());
        let mut many = pin(CID);
        many.origins = (0..21).map(|i| format!("/ip4/1.2.3.4/tcp/{i}")).collect();
        assert!(many.check().is_err());
        let mut bad = pin(CID);
        bad.origins = vec!["http://x".into()];
        assert!(bad.check().is_err());
    }

    #[test]
    fn filters_are_checked() {
        let q = RawPinQuery {
            cid: Some(CID.into()),
            name: Some("x".into()),
            text_match: Some("ipartial".into()),
            status: Some("queued,pinned".into()),
            before: Some("2026-11-21T10:00:00.123Z".into()),
            after: Some("2026-11-21T09:00:00+01:00".into()),
            limit: Some("1000".into()),
            meta: Some(r#"{"app":"a"}"#.into()),
        }
        .check()
        .unwrap();
        assert_eq!(q.statuses, vec![PinState::Queued, PinState::Pinned]);
        assert_eq!(q.name, Some(("x".into(), TextMatch::Ipartial)));
        assert_eq!(format_time(q.before_ms.unwrap()), "2026-11-21T10:00:00.123Z");
        assert_eq!(format_time(q.after_ms.unwrap()), "2026-11-21T08:00:00.000Z");
        assert_eq!(q.meta.get("app").map(String::as_str), Some("a"));
        for bad in [
            RawPinQuery { limit: Some("0".into()), ..Default::default() },
            RawPinQuery { limit: Some("1001".into()), ..Default::default() },
            RawPinQuery { status: Some("pinned,done".into()), ..Default::default() },
            RawPinQuery { text_match: Some("regex".into()), ..Default::default() },
            RawPinQuery { before: Some("yesterday".into()), ..Default::default() },
            RawPinQuery { meta: Some("[1]".into()), ..Default::default() },
            RawPinQuery { cid: Some(format!("{CID},nope")), ..Default::default() },
            RawPinQuery { cid: Some([CID; 11].join(",")), ..Default::default() },
        ] {
            assert!(bad.check().is_err());
        }
    }

    #[test]
    fn ids_and_secrets_have_their_shape() {
        let id = new_requestid();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(new_requestid(), id);
        assert!(new_secret().starts_with("est_"));
        assert_eq!(secret_digest("a").len(), 64);
    }

    #[test]
    fn states_map_both_ways() {
        for status in JobState::ALL {
            assert!(PinState::of(status).job_states().contains(&status));
        }
    }
}
