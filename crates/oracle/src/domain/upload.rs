//! Uploads, pure: the tus 1.0.0 request headers (core, creation, expiration, termination)
//! parsed and checked, and the per-account quotas an upload must fit in.
//!
//! The protocol is <https://tus.io/protocols/resumable-upload> v1.0.0; what this module follows:
//!
//! | header | rule (spec section) | refused with |
//! |---|---|---|
//! | `Tus-Resumable` | `1.0.0`; absent is taken as 1.0.0 so `curl` works (Tus-Resumable) | 412 |
//! | `Upload-Length` | 1\*DIGIT, at most `Tus-Max-Size` (creation) | 400, 413 |
//! | `Upload-Defer-Length` | not offered (creation-defer-length is not in `Tus-Extension`) | 400 |
//! | `Upload-Metadata` | comma-separated `key[ base64value]`, keys unique, no spaces or commas (creation) | 400 |
//! | `Upload-Offset` | 1\*DIGIT (core, PATCH) | 400 |
//! | `Content-Type` | `application/offset+octet-stream` on PATCH (core) | 415 |
//!
//! Numbers are plain ASCII digits: `+5`, ` 5`, `0x5` and values over `u64` are refused (Rust's
//! `u64::from_str` alone would take `+5`).

use base64::Engine;
use http::HeaderMap;

/// The protocol version spoken.
pub const TUS_VERSION: &str = "1.0.0";
/// The extensions offered, as `Tus-Extension` lists them.
pub const TUS_EXTENSIONS: &str = "creation,expiration,termination";
/// The media type of a PATCH body.
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";
/// Longest `Upload-Metadata` kept (bytes).
pub const MAX_METADATA_BYTES: usize = 4096;
/// Most `Upload-Metadata` pairs.
pub const MAX_METADATA_PAIRS: usize = 32;

/// Why a tus request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TusError {
    /// `Tus-Resumable` names a version this server does not speak (412, with `Tus-Version`).
    #[error("Tus-Resumable {0:?} is not supported; this server speaks 1.0.0")]
    Version(String),
    /// A header is missing or malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// `Upload-Length` is over `Tus-Max-Size` (413).
    #[error("Upload-Length {length} is over this server's Tus-Max-Size of {max} bytes")]
    TooLarge {
        /// What was asked.
        length: u64,
        /// The largest upload taken.
        max: u64,
    },
    /// A PATCH body of another media type (415).
    #[error("a PATCH body must be sent as Content-Type: application/offset+octet-stream")]
    MediaType,
}

impl TusError {
    /// The HTTP status the protocol gives this failure.
    pub fn status(&self) -> u16 {
        match self {
            Self::Version(_) => 412,
            Self::BadRequest(_) => 400,
            Self::TooLarge { .. } => 413,
            Self::MediaType => 415,
        }
    }
}

fn bad(message: impl Into<String>) -> TusError {
    TusError::BadRequest(message.into())
}

/// A header's value as text, if present; a value that is not visible ASCII is refused.
fn text<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, TusError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(bad(format!("{name} is given more than once")));
    }
    value.to_str().map(Some).map_err(|_| bad(format!("{name} is not ASCII text")))
}

/// A non-negative integer as the protocol writes it: 1 to 20 ASCII digits, fitting a `u64`.
pub fn parse_u64(value: &str) -> Option<u64> {
    if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

fn number(headers: &HeaderMap, name: &str) -> Result<u64, TusError> {
    let value = text(headers, name)?.ok_or_else(|| bad(format!("the {name} header is missing")))?;
    parse_u64(value).ok_or_else(|| bad(format!("{name} must be a whole number of bytes")))
}

/// Checks `Tus-Resumable` (absent is taken as 1.0.0).
pub fn check_version(headers: &HeaderMap) -> Result<(), TusError> {
    match text(headers, "tus-resumable") {
        Ok(None) => Ok(()),
        Ok(Some(TUS_VERSION)) => Ok(()),
        Ok(Some(other)) => Err(TusError::Version(other.chars().take(32).collect())),
        Err(_) => Err(TusError::Version("(unreadable)".into())),
    }
}

/// `Upload-Metadata`, checked: what was sent (echoed by `HEAD`) and its pairs decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// The header as sent, if it was.
    pub raw: Option<String>,
    /// Keys and their decoded values (a key may have no value).
    pub pairs: Vec<(String, Option<Vec<u8>>)>,
}

impl Metadata {
    /// The value of `key`, if given with one.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.pairs.iter().find(|(k, _)| k == key).and_then(|(_, v)| v.as_deref())
    }

    /// The value of `key` as UTF-8 text.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// Parses `Upload-Metadata`: `key value,key value,key` with base64 values.
pub fn parse_metadata(raw: &str) -> Result<Metadata, TusError> {
    if raw.len() > MAX_METADATA_BYTES {
        return Err(bad(format!("Upload-Metadata is longer than {MAX_METADATA_BYTES} bytes")));
    }
    let mut pairs: Vec<(String, Option<Vec<u8>>)> = Vec::new();
    if raw.trim().is_empty() {
        return Ok(Metadata { raw: Some(raw.to_owned()), pairs });
    }
    for pair in raw.split(',') {
        if pairs.len() == MAX_METADATA_PAIRS {
            return Err(bad(format!("Upload-Metadata has more than {MAX_METADATA_PAIRS} pairs")));
        }
        // `key`, or `key value` (the value may be empty: `key `).
        let pair = pair.trim_start();
        let (key, value) = match pair.split_once(' ') {
            None => (pair.trim_end(), None),
            Some((key, value)) => (key, Some(value.trim_end())),
        };
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            return Err(bad(format!("Upload-Metadata key {key:?} is empty or not ASCII")));
        }
        let value = match value {
            None => None,
            Some(v) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map_err(|_| bad(format!("Upload-Metadata value of {key:?} is not base64")))?,
            ),
        };
        if pairs.iter().any(|(k, _)| k == key) {
            return Err(bad(format!("Upload-Metadata key {key:?} is given twice")));
        }
        pairs.push((key.to_owned(), value));
    }
    Ok(Metadata { raw: Some(raw.to_owned()), pairs })
}

/// A checked creation request (`POST`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creation {
    /// `Upload-Length`: 1 to the server's `Tus-Max-Size`.
    pub length: u64,
    /// `Upload-Metadata`.
    pub metadata: Metadata,
}

/// Checks a creation request's headers against `max_size`.
pub fn parse_creation(headers: &HeaderMap, max_size: u64) -> Result<Creation, TusError> {
    check_version(headers)?;
    if headers.contains_key("upload-defer-length") {
        return Err(bad("Upload-Defer-Length is not supported: give Upload-Length"));
    }
    let length = number(headers, "upload-length")?;
    if length == 0 {
        return Err(bad("Upload-Length must be at least 1 byte (a CAR has a header)"));
    }
    if length > max_size {
        return Err(TusError::TooLarge { length, max: max_size });
    }
    let metadata = match text(headers, "upload-metadata")? {
        None => Metadata::default(),
        Some(raw) => parse_metadata(raw)?,
    };
    Ok(Creation { length, metadata })
}

/// Checks an append request's headers (`PATCH`); returns its `Upload-Offset`.
pub fn parse_append(headers: &HeaderMap) -> Result<u64, TusError> {
    check_version(headers)?;
    let media = text(headers, "content-type")?.unwrap_or_default();
    let essence = media.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case(OFFSET_OCTET_STREAM) {
        return Err(TusError::MediaType);
    }
    number(headers, "upload-offset")
}

/// An upload id: 32 hex digits.
pub fn valid_upload_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// What one account may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Bytes of its uploads, unfinished (their `Upload-Length`) and finished.
    pub max_bytes: u64,
    /// Unfinished uploads at once.
    pub max_uploads: u64,
    /// Pins made through the Pinning Service API.
    pub max_pins: u64,
}

/// What one account holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Bytes of its uploads (unfinished ones by their declared length).
    pub bytes: u64,
    /// Unfinished uploads.
    pub uploads: u64,
    /// Pins.
    pub pins: u64,
}

/// Why an account may not take more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuotaExceeded {
    /// Its uploads would hold more bytes than it may.
    #[error("this account's uploads would hold {would} bytes; its quota is {max}")]
    Bytes {
        /// With the new upload.
        would: u64,
        /// The quota.
        max: u64,
    },
    /// It has as many unfinished uploads as it may.
    #[error("this account has {max} unfinished uploads, its quota; finish or delete one")]
    Uploads {
        /// The quota.
        max: u64,
    },
    /// It has as many pins as it may.
    #[error("this account has {max} pins, its quota; delete one first")]
    Pins {
        /// The quota.
        max: u64,
    },
}

impl Quota {
    /// Whether `usage`, which already counts the new upload, is within the quota.
    pub fn admits_upload(&self, usage: Usage) -> Result<(), QuotaExceeded> {
        if usage.uploads > self.max_uploads {
            return Err(QuotaExceeded::Uploads { max: self.max_uploads });
        }
        if usage.bytes > self.max_bytes {
            return Err(QuotaExceeded::Bytes { would: usage.bytes, max: self.max_bytes });
        }
        Ok(())
    }

    /// Whether `usage`, which already counts the new pin, is within the quota.
    pub fn admits_pin(&self, usage: Usage) -> Result<(), QuotaExceeded> {
        if usage.pins > self.max_pins {
            return Err(QuotaExceeded::Pins { max: self.max_pins });
        }
        Ok(())
    }
}

/// Runs every tus parser over `data`, read as header lines (`name: value`), and checks what
/// they promise; the fuzz target `tus` and its corpus replay call it. Never panics on any input.
pub fn fuzz_tus(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&line[..colon]),
            http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let max = 1 << 20;
    if let Ok(creation) = parse_creation(&headers, max) {
        assert!((1..=max).contains(&creation.length));
        assert!(creation.metadata.pairs.len() <= MAX_METADATA_PAIRS);
        let keys: std::collections::HashSet<_> =
            creation.metadata.pairs.iter().map(|(k, _)| k).collect();
        assert_eq!(keys.len(), creation.metadata.pairs.len(), "metadata keys are unique");
    }
    if let Ok(offset) = parse_append(&headers) {
        assert_eq!(
            Some(offset),
            headers.get("upload-offset").and_then(|v| parse_u64(v.to_str().ok()?))
        );
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(metadata) = parse_metadata(text)
    {
        // What was decoded encodes back to values the parser takes again, the same.
        let again: Vec<String> = metadata
            .pairs
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k} {}", base64::engine::general_purpose::STANDARD.encode(v)),
                None => k.clone(),
            })
            .collect();
        if !again.is_empty() {
            let reparsed = parse_metadata(&again.join(",")).expect("re-encoded metadata parses");
            assert_eq!(reparsed.pairs, metadata.pairs);
        }
    }
    let _ = check_version(&headers);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn creation_follows_the_spec() {
        let ok = parse_creation(
            &headers(&[
                ("tus-resumable", "1.0.0"),
                ("upload-length", "100"),
                (
                    "upload-metadata",
                    "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential",
                ),
            ]),
            1000,
        )
        .unwrap();
        assert_eq!(ok.length, 100);
        assert_eq!(ok.metadata.text("filename"), Some("world_domination_plan.pdf"));
        assert_eq!(ok.metadata.get("is_confidential"), None);
        assert!(ok.metadata.pairs.iter().any(|(k, v)| k == "is_confidential" && v.is_none()));
        let refused = |pairs: &[(&str, &str)]| parse_creation(&headers(pairs), 1000).unwrap_err();
        assert_eq!(refused(&[("upload-length", "1001")]).status(), 413);
        assert_eq!(refused(&[("tus-resumable", "0.2.2"), ("upload-length", "1")]).status(), 412);
        for bad in ["", "0", "+5", " 5", "5 ", "0x5", "-1", "1e3", "99999999999999999999999"] {
            assert_eq!(refused(&[("upload-length", bad)]).status(), 400, "{bad:?}");
        }
        assert_eq!(refused(&[("upload-defer-length", "1")]).status(), 400);
        assert_eq!(refused(&[("upload-length", "1"), ("upload-length", "2")]).status(), 400);
        for bad in ["a b c", "a !!!", "a,a", ",", "a YQ==,a YQ==", " x\tb"] {
            let e = refused(&[("upload-length", "1"), ("upload-metadata", bad)]);
            assert_eq!(e.status(), 400, "{bad:?}");
        }
    }

    #[test]
    fn appends_need_the_media_type_and_an_offset() {
        let ct = ("content-type", OFFSET_OCTET_STREAM);
        assert_eq!(parse_append(&headers(&[ct, ("upload-offset", "7")])), Ok(7));
        assert_eq!(
            parse_append(&headers(&[
                ("content-type", "Application/Offset+Octet-Stream; x=1"),
                ("upload-offset", "0")
            ])),
            Ok(0)
        );
        assert_eq!(parse_append(&headers(&[("upload-offset", "0")])), Err(TusError::MediaType));
        assert_eq!(parse_append(&headers(&[ct])).unwrap_err().status(), 400);
        assert_eq!(
            parse_append(&headers(&[ct, ("upload-offset", "-1")])).unwrap_err().status(),
            400
        );
    }

    #[test]
    fn quotas_count_the_new_upload() {
        let q = Quota { max_bytes: 100, max_uploads: 2, max_pins: 1 };
        assert!(q.admits_upload(Usage { bytes: 100, uploads: 2, pins: 9 }).is_ok());
        assert!(matches!(
            q.admits_upload(Usage { bytes: 101, uploads: 1, pins: 0 }),
            Err(QuotaExceeded::Bytes { would: 101, max: 100 })
        ));
        assert!(matches!(
            q.admits_upload(Usage { bytes: 1, uploads: 3, pins: 0 }),
            Err(QuotaExceeded::Uploads { max: 2 })
        ));
        assert!(q.admits_pin(Usage { pins: 1, ..Usage::default() }).is_ok());
        assert!(q.admits_pin(Usage { pins: 2, ..Usage::default() }).is_err());
    }

    #[test]
    fn upload_ids_are_lowercase_hex() {
        assert!(valid_upload_id(&"a".repeat(32)));
        assert!(!valid_upload_id(&"A".repeat(32)));
        assert!(!valid_upload_id(&"a".repeat(31)));
        assert!(!valid_upload_id("../../../../etc/passwd0000000000"));
    }

    /// Replays the fuzz target's seed corpus and every kept crasher (`fuzz/corpus/tus`,
    /// `fuzz/regressions/tus`).
    #[test]
    fn the_fuzz_corpus_replays() {
        let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut replayed = 0;
        for dir in ["corpus/tus", "regressions/tus"] {
            for entry in std::fs::read_dir(fuzz.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() && path.file_name().is_some_and(|n| n != ".gitkeep") {
                    fuzz_tus(&std::fs::read(&path).unwrap());
                    replayed += 1;
                }
            }
        }
        assert!(replayed >= 5, "the seed corpus is missing");
    }

    proptest! {
        #[test]
        fn the_tus_parsers_take_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            fuzz_tus(&data);
        }

        #[test]
        fn header_like_inputs_too(
            lines in proptest::collection::vec(
                (prop::sample::select(vec!["upload-length", "upload-offset", "upload-metadata",
                    "tus-resumable", "content-type", "upload-defer-length", "x"]),
                 "[ -~]{0,40}"),
                0..8,
            )
        ) {
            let text: Vec<String> = lines.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            fuzz_tus(text.join("\n").as_bytes());
        }

        #[test]
        fn metadata_round_trips(pairs in proptest::collection::btree_map("[a-z0-9_.-]{1,12}",
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)), 0..10)) {
            let raw: Vec<String> = pairs.iter().map(|(k, v)| match v {
                Some(v) => format!("{k} {}", base64::engine::general_purpose::STANDARD.encode(v)),
                None => k.clone(),
            }).collect();
            let parsed = parse_metadata(&raw.join(",")).unwrap();
            let want: Vec<(String, Option<Vec<u8>>)> = pairs.into_iter().collect();
            prop_assert_eq!(parsed.pairs, want);
        }
    }
}
