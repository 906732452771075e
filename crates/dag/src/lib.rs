//! IPFS data formats for Estuary.
//!
//! This crate does no I/O and pulls in no async runtime or chain client: it builds for
//! `wasm32-unknown-unknown` (CI checks it) and is shared by the browser node, the oracle and the
//! CLI, so every part of Estuary reads and writes the same bytes.
//!
//! - [`cid`]: content identifiers from untrusted text or bytes;
//! - [`pb`], [`unixfs`]: the dag-pb node and UnixFS metadata codecs, byte-exact and strict;
//! - [`file`](mod@file), [`dir`], [`hamt`]: streaming UnixFS import (balanced layout) and directory trees, under the
//!   [`profile`]s that reproduce kubo's and Helia's CIDs;
//! - [`import`]: files and folders to blocks, in the canonical order ([`order`]) every Estuary
//!   CAR has, so the page, `estuary add` and the oracle write the same CAR and piece;
//! - [`car`]: CAR v1 sections and headers, written as blocks are produced and read with checks;
//! - [`cbor`]: the one dag-cbor reader (block links, CAR headers);
//! - [`source`]: where blocks come from, with errors that tell missing from failed;
//! - [`walk`]: the one depth-first walker (order, dedup, limits) every traversal is driven by;
//! - [`export`], [`traversal`], [`dfs_file`]: paths, files, byte ranges and gateway CARs read
//!   back from any block source;
//! - [`bitswap`]: the messages of the Bitswap block exchange protocol.

//!
//! Features: `io` adds conveniences over `std::io::Read` (`FileBuilder::push_reader`,
//! `car::CarReader`) for native callers; `serde` derives `Serialize` for [`CidInfo`].

pub mod bitswap;
pub mod block;
pub mod car;
pub mod cbor;
pub mod cid;
pub mod dfs_file;
pub mod dir;
pub mod export;
pub mod file;
#[doc(hidden)]
pub mod fuzzing;
pub mod hamt;
#[doc(hidden)]
pub mod hostile;
pub mod import;
pub mod order;
pub mod pb;
pub mod profile;
pub mod source;
pub mod traversal;
pub mod unixfs;
pub mod varint;
pub mod walk;

pub use crate::{
    block::Block,
    cid::{CidError, CidInfo, parse_cid, parse_cid_bytes},
    dir::DirectoryBuilder,
    file::{FileBuilder, HashedLeafError, Imported},
    import::{EntryKind, ImportError, Importer},
    profile::{ImportOptions, Profile},
    source::{BlockError, BlockSource},
};
