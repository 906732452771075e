//! Listing the blocks of a verified piece's CAR, for the trustless gateway: each block's CID,
//! and where its data is in the file.
//!
//! Done after the piece is verified, off the download's path (the deal does not wait for it),
//! by the CAR decoder of `estuary_dag`, which checks every block against its CID: a block
//! listed here hashes to its CID. A piece whose payload is not a readable CAR is still a valid
//! deal (its commitment matched); it is just not served by CID.

use std::{io::Read, path::Path};

use cid::Cid;
use estuary_dag::car::{CarDecoder, CarItem, CarLimits};

/// Blocks handed to the sink at a time.
pub const BATCH: usize = 1024;

/// A listed block: binary CID, offset of its data in the file, length.
pub type Entry = (Vec<u8>, u64, u64);

/// What listing a CAR found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indexed {
    /// The CAR's roots.
    pub roots: Vec<Cid>,
    /// Blocks listed.
    pub blocks: u64,
}

/// Why a CAR could not be listed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The file could not be read (retryable).
    #[error("reading the CAR: {0}")]
    Io(#[from] std::io::Error),
    /// The payload is not a valid CAR (final: the piece is not served by CID).
    #[error("not a readable CAR: {0}")]
    NotCar(#[from] estuary_dag::car::CarError),
    /// The sink failed (retryable).
    #[error("storing the index: {0}")]
    Sink(String),
}

/// Lists the blocks of the CAR at `path`, handing them to `sink` [`BATCH`] at a time.
pub fn index_car(
    path: &Path,
    mut sink: impl FnMut(Vec<Entry>) -> Result<(), String>,
) -> Result<Indexed, IndexError> {
    let mut file = std::fs::File::open(path)?;
    let mut decoder = CarDecoder::new(CarLimits::default());
    let mut buf = vec![0u8; 1 << 20];
    let mut roots = Vec::new();
    let mut batch = Vec::with_capacity(BATCH);
    let mut blocks = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        decoder.push(&buf[..n]);
        while let Some(item) = decoder.next_item()? {
            match item {
                CarItem::Header(h) => roots = h.roots,
                CarItem::Block(block) => {
                    let len = block.data.len() as u64;
                    let offset = decoder.offset() - len;
                    batch.push((block.cid.to_bytes(), offset, len));
                    blocks += 1;
                    if batch.len() >= BATCH {
                        sink(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                            .map_err(IndexError::Sink)?;
                    }
                }
            }
        }
    }
    decoder.finish()?;
    if !batch.is_empty() {
        sink(batch).map_err(IndexError::Sink)?;
    }
    Ok(Indexed { roots, blocks })
}

#[cfg(test)]
mod tests {
    use estuary_dag::{
        Block,
        car::{encode_section, header_v1},
    };

    use super::*;

    #[test]
    fn blocks_are_found_where_the_index_says() {
        let blocks: Vec<Block> = (0..5u8)
            .map(|i| Block::new(cid::Version::V1, 0x55, vec![i; 100 + usize::from(i)]))
            .collect();
        let mut car = header_v1(&[blocks[0].cid]);
        for b in &blocks {
            encode_section(b, &mut car);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.car");
        std::fs::write(&path, &car).unwrap();
        let mut entries = Vec::new();
        let done = index_car(&path, |batch| {
            entries.extend(batch);
            Ok(())
        })
        .unwrap();
        assert_eq!(done, Indexed { roots: vec![blocks[0].cid], blocks: 5 });
        for ((cid, offset, len), block) in entries.iter().zip(&blocks) {
            assert_eq!(cid, &block.cid.to_bytes());
            let at = usize::try_from(*offset).unwrap();
            assert_eq!(&car[at..at + usize::try_from(*len).unwrap()], block.data.as_slice());
        }
        std::fs::write(&path, &car[..car.len() - 3]).unwrap();
        assert!(matches!(index_car(&path, |_| Ok(())), Err(IndexError::NotCar(_))));
        std::fs::write(&path, b"not a car at all").unwrap();
        assert!(matches!(index_car(&path, |_| Ok(())), Err(IndexError::NotCar(_))));
    }
}
