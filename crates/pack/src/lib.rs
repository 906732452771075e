//! Files → UnixFS DAG → CAR → piece: the one pipeline every Estuary CAR is written with.
//!
//! ```text
//!  files ─► estuary_dag::Importer ─┐                         ┌─► CAR bytes ─► the caller's sink
//!                                  ├─► blocks, canonical ───►│ CarStream
//!  a stored DAG ─► order::canonical┘    order, each once     └─► piece hasher: CommP,
//!                                                                 ParallelCommP, or the caller's
//! ```                                                             own (browser workers)
//!
//! `estuary add --car`, the browser node ([`CarImporter`]) and the oracle's packer
//! ([`pack_dag`]) all go through [`CarStream`], and their blocks come in the canonical order of
//! [`estuary_dag::order`]: so the CAR a person makes in the page, the CAR `estuary add` writes
//! and the CAR the oracle packs from the blocks it fetched are the same bytes, and have the same
//! piece CID — the one reported on chain.
//!
//! A CAR whose root is known only at the end (an import) starts with a provisional header of
//! the final length, which the caller overwrites at the end with [`Finished::head`]; the piece
//! hasher gets the real bytes through `finish_with_prefix`, so the piece comes out of the same
//! single pass. Sans-io: bytes go out in `Vec`s and come in as slices; the crate builds for
//! `wasm32-unknown-unknown`.

use ::cid::Cid;
use estuary_dag::{
    ImportError, Imported, Importer,
    block::{DAG_PB, sha256_cid},
    car::{self, V2_PREFIX_LEN},
    source::BlockSource,
    walk::{WalkError, WalkLimits},
};
use estuary_piece::{CommP, PieceError, PieceInfo};

/// Why a CAR could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    /// The importer refused a step.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// The piece could not be computed (over 64 GiB padded).
    #[error(transparent)]
    Piece(#[from] PieceError),
    /// The root's CID is not as long as the provisional one (a raw-leaf root under CIDv0): the
    /// header cannot be patched in place. The caller moves the sections or starts again.
    #[error("the root's CID is {got} bytes, the provisional header's {expected}")]
    RootLength {
        /// The provisional header's length.
        expected: usize,
        /// The real header's length.
        got: usize,
    },
    /// Pre-hashed leaves bypass the piece hasher: only a stream whose caller hashes the CAR
    /// itself ([`External`]) takes them.
    #[error("pre-hashed leaves need a CAR stream whose piece the caller computes")]
    LeavesNeedExternalPiece,
}

/// What commits to a CAR's bytes as they are written.
pub trait PieceHasher {
    /// Adds bytes.
    fn update(&mut self, bytes: &[u8]);
    /// The piece of everything added with its first `prefix.len()` bytes replaced by `prefix`;
    /// `None` when the caller computes the piece itself ([`External`]).
    fn finish_with_prefix(self, prefix: &[u8]) -> Result<Option<PieceInfo>, PieceError>;
    /// Whether bytes may reach the CAR without going through [`update`](Self::update).
    fn is_external(&self) -> bool {
        false
    }
}

impl PieceHasher for CommP {
    fn update(&mut self, bytes: &[u8]) {
        CommP::update(self, bytes);
    }
    fn finish_with_prefix(self, prefix: &[u8]) -> Result<Option<PieceInfo>, PieceError> {
        CommP::finish_with_prefix(self, prefix).map(Some)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl PieceHasher for estuary_piece::ParallelCommP {
    fn update(&mut self, bytes: &[u8]) {
        estuary_piece::ParallelCommP::update(self, bytes);
    }
    fn finish_with_prefix(self, prefix: &[u8]) -> Result<Option<PieceInfo>, PieceError> {
        estuary_piece::ParallelCommP::finish_with_prefix(self, prefix).map(Some)
    }
}

/// No piece here: the caller commits to the CAR bytes it writes (the browser hashes them in a
/// pool of workers) and patches the first bytes itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct External;

impl PieceHasher for External {
    fn update(&mut self, _: &[u8]) {}
    fn finish_with_prefix(self, _: &[u8]) -> Result<Option<PieceInfo>, PieceError> {
        Ok(None)
    }
    fn is_external(&self) -> bool {
        true
    }
}

/// A CAR written as its blocks come: sections appended to the caller's buffer, every byte
/// committed to as it goes.
#[derive(Debug)]
pub struct CarStream<H> {
    hasher: H,
    /// The header written first: final, or provisional (to be patched).
    header: Vec<u8>,
    provisional: bool,
    v2: bool,
    /// Section bytes written (after the header).
    sections: u64,
    blocks: u64,
    /// Each block's section offset from the start of the payload (for a CARv2 index).
    index: Option<Vec<(Cid, u64)>>,
}

/// A finished CAR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The bytes to write at offset 0 over what was written there first (the CARv2 prefix and
    /// the real header); equal in length to them.
    pub head: Vec<u8>,
    /// Bytes to append at the end (a CARv2's index); empty for CARv1.
    pub tail: Vec<u8>,
    /// The piece, unless the caller computes it ([`External`]).
    pub piece: Option<PieceInfo>,
    /// The whole CAR's size.
    pub car_bytes: u64,
    /// Blocks in it.
    pub blocks: u64,
}

impl<H: PieceHasher> CarStream<H> {
    fn start(
        header: Vec<u8>,
        provisional: bool,
        v2: bool,
        mut hasher: H,
        out: &mut Vec<u8>,
    ) -> Self {
        if v2 {
            let zeros = [0u8; V2_PREFIX_LEN as usize];
            out.extend_from_slice(&zeros);
            hasher.update(&zeros);
        }
        out.extend_from_slice(&header);
        hasher.update(&header);
        Self { hasher, header, provisional, v2, sections: 0, blocks: 0, index: v2.then(Vec::new) }
    }

    /// A CAR whose header names `root`, known from the start (a packer), or with
    /// `provisional` a CID as long as the root will be, to be patched at the end; with `v2`, a
    /// CARv2 (pragma, header and a go-car compatible index after the payload).
    pub fn new(root: &Cid, provisional: bool, v2: bool, hasher: H, out: &mut Vec<u8>) -> Self {
        Self::start(car::header_v1(&[*root]), provisional, v2, hasher, out)
    }

    /// A CARv1 whose header names `root`, known from the start (a packer).
    pub fn with_root(root: &Cid, hasher: H, out: &mut Vec<u8>) -> Self {
        Self::new(root, false, false, hasher, out)
    }

    /// A CAR whose root is known only at the end: the header written first names a CID as long
    /// as `like`, and [`finish`](Self::finish) gives the real one to write over it. With `v2`,
    /// a CARv2 (pragma, header and a go-car compatible index after the payload).
    pub fn provisional(like: &Cid, v2: bool, hasher: H, out: &mut Vec<u8>) -> Self {
        Self::start(car::header_v1(&[*like]), true, v2, hasher, out)
    }

    /// [`provisional`](Self::provisional) for an import under `opts`: the root is a dag-pb
    /// node in the options' CID version (a raw-leaf root — one chunk under raw leaves — is
    /// as long under CIDv1; only CIDv0 with raw leaves differs, see
    /// [`PackError::RootLength`]).
    pub fn for_import(
        opts: &estuary_dag::ImportOptions,
        v2: bool,
        hasher: H,
        out: &mut Vec<u8>,
    ) -> Self {
        Self::provisional(&sha256_cid(opts.cid_version, DAG_PB, b""), v2, hasher, out)
    }

    /// Appends `block`'s section. The caller hands each block once (the importer and the
    /// canonical order do).
    pub fn block(&mut self, cid: &Cid, data: &[u8], out: &mut Vec<u8>) {
        let before = out.len();
        let cid_bytes = cid.to_bytes();
        estuary_dag::varint::encode((cid_bytes.len() + data.len()) as u64, out);
        out.extend_from_slice(&cid_bytes);
        out.extend_from_slice(data);
        self.record(cid, out.len() - before);
        self.hasher.update(&out[before..]);
    }

    /// Appends the start of a section whose data (`len` bytes) the caller writes right after:
    /// a pre-hashed leaf whose bytes never pass through here. Only with [`External`].
    pub fn leaf_head(&mut self, cid: &Cid, len: usize, out: &mut Vec<u8>) -> Result<(), PackError> {
        if !self.hasher.is_external() {
            return Err(PackError::LeavesNeedExternalPiece);
        }
        let before = out.len();
        let cid_bytes = cid.to_bytes();
        estuary_dag::varint::encode((cid_bytes.len() + len) as u64, out);
        out.extend_from_slice(&cid_bytes);
        self.record(cid, out.len() - before + len);
        Ok(())
    }

    fn record(&mut self, cid: &Cid, section: usize) {
        if let Some(index) = &mut self.index {
            index.push((*cid, self.header.len() as u64 + self.sections));
        }
        self.sections += section as u64;
        self.blocks += 1;
    }

    /// Blocks written so far.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// CAR bytes written so far.
    pub fn car_bytes(&self) -> u64 {
        (if self.v2 { V2_PREFIX_LEN } else { 0 }) + self.header.len() as u64 + self.sections
    }

    /// Ends the CAR, whose root is `root`.
    pub fn finish(mut self, root: &Cid) -> Result<Finished, PackError> {
        let header = if self.provisional { car::header_v1(&[*root]) } else { self.header.clone() };
        if header.len() != self.header.len() {
            return Err(PackError::RootLength { expected: self.header.len(), got: header.len() });
        }
        let data_size = header.len() as u64 + self.sections;
        let mut head = Vec::new();
        let mut tail = Vec::new();
        if let Some(index) = self.index.take() {
            head.extend_from_slice(&car::v2_prefix(data_size, true));
            tail = car::multihash_index_sorted(&index);
            self.hasher.update(&tail);
        }
        head.extend_from_slice(&header);
        let car_bytes = self.car_bytes() + tail.len() as u64;
        let piece = self.hasher.finish_with_prefix(&head)?;
        Ok(Finished { head, tail, piece, car_bytes, blocks: self.blocks })
    }
}

/// The parts of a pre-hashed leaf in the CAR: write `head`, then the leaf's bytes if `data`,
/// then `tail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafParts {
    /// Everything before the leaf's bytes (earlier output, and the leaf's section start).
    pub head: Vec<u8>,
    /// Whether the leaf's bytes go in (false when the same leaf is in the CAR already).
    pub data: bool,
    /// The parents the leaf completed.
    pub tail: Vec<u8>,
}

/// Files and folders to a CAR and its piece in one pass: an [`Importer`] writing into a
/// [`CarStream`]. Each step returns (or leaves in [`take_output`](Self::take_output)) the
/// CAR bytes to append.
#[derive(Debug)]
pub struct CarImporter<H> {
    importer: Importer,
    car: CarStream<H>,
    out: Vec<u8>,
}

impl<H: PieceHasher> CarImporter<H> {
    /// An import into a CAR (v2 with `v2`), committed to by `hasher`. The provisional start of
    /// the CAR is the first output.
    pub fn new(importer: Importer, v2: bool, hasher: H) -> Self {
        let like = sha256_cid(importer.options().cid_version, DAG_PB, b"");
        Self::with_provisional_root(importer, &like, v2, hasher)
    }

    /// [`new`](Self::new) for a root that will be as long as `like` (a single-chunk file under
    /// raw leaves has a raw-leaf CIDv1 root, whatever the options' CID version).
    pub fn with_provisional_root(importer: Importer, like: &Cid, v2: bool, hasher: H) -> Self {
        let mut out = Vec::new();
        let car = CarStream::provisional(like, v2, hasher, &mut out);
        Self { importer, car, out }
    }

    /// The importer (its entry order and counts).
    pub fn importer(&self) -> &Importer {
        &self.importer
    }

    /// CAR bytes produced since the last call.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// CAR bytes written so far (returned or not).
    pub fn car_bytes(&self) -> u64 {
        self.car.car_bytes()
    }

    /// Starts the next file; returns its index among the declared entries.
    pub fn begin_file(&mut self) -> Result<usize, PackError> {
        Ok(self.importer.begin_file()?)
    }

    /// Adds bytes of the current file.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), PackError> {
        let (car, out) = (&mut self.car, &mut self.out);
        self.importer.push(bytes, &mut |b| car.block(&b.cid, &b.data, out))?;
        Ok(())
    }

    /// Adds one whole leaf by its length and SHA-256 (its bytes stay with the caller; see
    /// [`Importer::push_hashed_leaf`]). Needs [`External`].
    pub fn push_hashed_leaf(
        &mut self,
        len: usize,
        sha256: [u8; 32],
    ) -> Result<LeafParts, PackError> {
        if !self.car.hasher.is_external() {
            return Err(PackError::LeavesNeedExternalPiece);
        }
        let mut tail = Vec::new();
        let mut parents = Vec::new();
        let new = self.importer.push_hashed_leaf(len, sha256, &mut |b| parents.push(b))?;
        let mut head = std::mem::take(&mut self.out);
        if let Some(cid) = new {
            self.car.leaf_head(&cid, len, &mut head)?;
        }
        for b in parents {
            self.car.block(&b.cid, &b.data, &mut tail);
        }
        Ok(LeafParts { head, data: new.is_some(), tail })
    }

    /// Ends the current file; returns its root.
    pub fn end_file(&mut self) -> Result<Imported, PackError> {
        let (car, out) = (&mut self.car, &mut self.out);
        Ok(self.importer.end_file(&mut |b| car.block(&b.cid, &b.data, out))?)
    }

    /// Adds the next entry, a symbolic link.
    pub fn add_symlink(&mut self) -> Result<usize, PackError> {
        let (car, out) = (&mut self.car, &mut self.out);
        Ok(self.importer.add_symlink(&mut |b| car.block(&b.cid, &b.data, out))?)
    }

    /// Adds an empty directory.
    pub fn add_dir(&mut self, path: &str) -> Result<(), PackError> {
        Ok(self.importer.add_dir(path)?)
    }

    /// Ends the import (wrapped in a directory as `wrap`, if given): returns the root, the
    /// finished CAR and the last bytes to append (before [`Finished::tail`]).
    pub fn finish(self, wrap: Option<&str>) -> Result<(Imported, Finished, Vec<u8>), PackError> {
        self.finish_with_stats(wrap).map(|(root, finished, out, _)| (root, finished, out))
    }

    /// [`finish`](Self::finish), with the import's final counts.
    pub fn finish_with_stats(
        self,
        wrap: Option<&str>,
    ) -> Result<(Imported, Finished, Vec<u8>, estuary_dag::import::ImportStats), PackError> {
        let Self { mut importer, mut car, mut out } = self;
        let root = importer.finish_wrapped(wrap, &mut |b| car.block(&b.cid, &b.data, &mut out))?;
        let finished = car.finish(&root.cid)?;
        Ok((root, finished, out, importer.stats()))
    }
}

/// What [`pack_dag`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    /// The piece of the CAR.
    pub piece: PieceInfo,
    /// CAR bytes.
    pub car_bytes: u64,
    /// Blocks in it.
    pub blocks: u64,
    /// Bytes of those blocks.
    pub dag_bytes: u64,
}

/// Why [`pack_dag`] stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackDagError<E> {
    /// The DAG could not be walked (a block missing, the source failing, a limit).
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// The piece could not be computed.
    #[error(transparent)]
    Piece(#[from] PieceError),
    /// The sink refused the bytes.
    #[error("writing the CAR: {0}")]
    Write(E),
}

/// Writes the CAR of the DAG under `root` (v1, the root as its only root, blocks in the
/// canonical order) to `write` in pieces of about 1 MiB, and computes its piece with `hasher`.
/// Reads blocks from `source` within `limits`.
pub fn pack_dag<S: BlockSource, H: PieceHasher, E>(
    root: Cid,
    limits: WalkLimits,
    source: S,
    hasher: H,
    mut write: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<Packed, PackDagError<E>> {
    const FLUSH: usize = 1 << 20;
    let mut out = Vec::with_capacity(FLUSH + (2 << 20));
    let mut car = CarStream::with_root(&root, hasher, &mut out);
    let mut failed = None;
    let mut dag_bytes = 0u64;
    estuary_dag::order::canonical(root, limits, source, |cid, data| {
        if failed.is_some() {
            return;
        }
        car.block(cid, data, &mut out);
        dag_bytes += data.len() as u64;
        if out.len() >= FLUSH {
            if let Err(e) = write(&out) {
                failed = Some(e);
            }
            out.clear();
        }
    })?;
    if let Some(e) = failed {
        return Err(PackDagError::Write(e));
    }
    if !out.is_empty() {
        write(&out).map_err(PackDagError::Write)?;
    }
    let finished = car.finish(&root).map_err(|e| match e {
        PackError::Piece(p) => PackDagError::Piece(p),
        other => unreachable!("a CAR with a known root only fails in its piece: {other}"),
    })?;
    let piece = finished.piece.ok_or(PieceError::TooLarge).map_err(PackDagError::Piece)?;
    Ok(Packed { piece, car_bytes: finished.car_bytes, blocks: finished.blocks, dag_bytes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use estuary_dag::{EntryKind, ImportOptions, Profile, car::read_car};
    use std::collections::HashMap;

    fn opts() -> ImportOptions {
        ImportOptions { chunk_size: 64, max_links: 3, ..Profile::UnixfsV1_2025.options() }
    }

    /// Imports a folder through the pipeline; returns the CAR bytes (patched) and the piece.
    fn import_folder(files: &[(&str, Vec<u8>)], v2: bool) -> (Imported, Vec<u8>, PieceInfo) {
        let entries = files.iter().map(|(p, _)| ((*p).to_owned(), EntryKind::File)).collect();
        let importer = Importer::folder(opts(), entries).unwrap();
        let mut imp = CarImporter::new(importer, v2, CommP::new());
        let mut car = imp.take_output();
        for &i in imp.importer().order().to_vec().iter() {
            imp.begin_file().unwrap();
            imp.push(&files[i].1).unwrap();
            imp.end_file().unwrap();
            car.extend(imp.take_output());
        }
        let (root, finished, last) = imp.finish(None).unwrap();
        car.extend(last);
        car.extend(&finished.tail);
        car[..finished.head.len()].copy_from_slice(&finished.head);
        assert_eq!(finished.car_bytes, car.len() as u64);
        (root, car, finished.piece.unwrap())
    }

    fn files() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("z/deep/f", (0..500u32).map(|i| (i % 13) as u8).collect()),
            ("a.txt", b"hello".to_vec()),
            ("z/g", (0..300u32).map(|i| (i % 13) as u8).collect()),
        ]
    }

    #[test]
    fn the_packer_writes_the_importers_car() {
        let (root, car, piece) = import_folder(&files(), false);
        assert_eq!(piece, estuary_piece::commp::commp(&car).unwrap());
        let (header, blocks) = read_car(&car, car::CarLimits::default()).unwrap();
        assert_eq!(header.roots, [root.cid]);
        let store: HashMap<Cid, Vec<u8>> = blocks.into_iter().map(|b| (b.cid, b.data)).collect();
        let mut packed = Vec::new();
        let done = pack_dag(root.cid, WalkLimits::default(), &store, CommP::new(), |b| {
            packed.extend_from_slice(b);
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(packed, car, "byte for byte");
        assert_eq!(done.piece, piece);
        assert_eq!(done.car_bytes, car.len() as u64);
    }

    #[test]
    fn a_v2_car_commits_to_its_index() {
        let (_, car, piece) = import_folder(&files(), true);
        assert_eq!(piece, estuary_piece::commp::commp(&car).unwrap());
        let prefix: [u8; 51] = car[..51].try_into().unwrap();
        let v2 = car::V2Header::from_prefix(&prefix).unwrap();
        assert_eq!(v2.index_offset, V2_PREFIX_LEN + v2.data_size);
    }

    #[test]
    fn pre_hashed_leaves_make_the_same_car() {
        use sha2::Digest;
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 7) as u8).collect();
        let plain = {
            let importer = Importer::file(opts()).unwrap();
            let mut imp = CarImporter::new(importer, false, External);
            let mut car = imp.take_output();
            imp.begin_file().unwrap();
            imp.push(&data).unwrap();
            imp.end_file().unwrap();
            let (_, finished, last) = imp.finish(None).unwrap();
            car.extend(last);
            car[..finished.head.len()].copy_from_slice(&finished.head);
            car
        };
        let importer = Importer::file(opts()).unwrap();
        let mut imp = CarImporter::new(importer, false, External);
        let mut car = Vec::new();
        imp.begin_file().unwrap();
        for leaf in data.chunks(64) {
            let parts =
                imp.push_hashed_leaf(leaf.len(), sha2::Sha256::digest(leaf).into()).unwrap();
            car.extend(parts.head);
            if parts.data {
                car.extend_from_slice(leaf);
            }
            car.extend(parts.tail);
        }
        imp.end_file().unwrap();
        let (_, finished, last) = imp.finish(None).unwrap();
        car.extend(last);
        car[..finished.head.len()].copy_from_slice(&finished.head);
        assert_eq!(car, plain);
        let importer = Importer::file(opts()).unwrap();
        let mut own = CarImporter::new(importer, false, CommP::new());
        own.begin_file().unwrap();
        assert!(matches!(
            own.push_hashed_leaf(64, [0; 32]),
            Err(PackError::LeavesNeedExternalPiece)
        ));
    }
}
