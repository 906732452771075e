//! IPFS data formats for Estuary.
//!
//! This crate does no I/O and pulls in no async runtime or chain client: it builds for
//! `wasm32-unknown-unknown` (CI checks it) and is shared by the browser node, the oracle and the
//! CLI, so every part of Estuary reads and writes the same bytes.
//!
//! Today it holds [`cid`]: parsing and describing content identifiers from their text or binary
//! form with typed errors.

pub mod cid;

pub use crate::cid::{CidError, CidInfo, parse_cid, parse_cid_bytes};
