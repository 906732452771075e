//! UnixFS metadata: the protobuf `Data` message inside a dag-pb node's data field.
//!
//! Encoding follows the reference implementations byte for byte: fields in number order, empty
//! `Data` left out, `filesize` written for files and raw nodes only, `blocksizes` unpacked.

use crate::varint;

/// Why bytes are not UnixFS metadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnixFsError {
    /// A varint is malformed.
    #[error("malformed varint: {0}")]
    Varint(#[from] varint::VarintError),
    /// A length runs past the end.
    #[error("a field's length runs past the end of the metadata")]
    Truncated,
    /// The required `Type` field is missing.
    #[error("UnixFS metadata has no Type")]
    MissingType,
    /// An unknown node type.
    #[error("unknown UnixFS type {0}")]
    UnknownType(u64),
    /// A field number or wire type the schema does not define.
    #[error("unexpected field {field} with wire type {wire_type}")]
    UnexpectedField {
        /// The field number.
        field: u64,
        /// The wire type.
        wire_type: u64,
    },
    /// More block sizes than a node could link to.
    #[error("too many blocksizes")]
    TooManyBlockSizes,
}

/// The kind of a UnixFS node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DataType {
    /// Raw bytes (legacy leaves).
    Raw = 0,
    /// A directory.
    Directory = 1,
    /// A file, or a chunk of one.
    File = 2,
    /// Metadata (unused).
    Metadata = 3,
    /// A symbolic link; `data` is the target.
    Symlink = 4,
    /// A shard of a HAMT-sharded directory.
    HamtShard = 5,
}

impl DataType {
    fn from_u64(v: u64) -> Result<Self, UnixFsError> {
        Ok(match v {
            0 => Self::Raw,
            1 => Self::Directory,
            2 => Self::File,
            3 => Self::Metadata,
            4 => Self::Symlink,
            5 => Self::HamtShard,
            other => return Err(UnixFsError::UnknownType(other)),
        })
    }
}

/// Modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixTime {
    /// Seconds since the epoch.
    pub seconds: i64,
    /// Nanoseconds past `seconds`.
    pub nanos: Option<u32>,
}

/// The UnixFS `Data` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixFsData {
    /// Node type.
    pub kind: DataType,
    /// Inline bytes: file data in a leaf, a symlink's target, a HAMT's bitfield.
    pub data: Option<Vec<u8>>,
    /// Total file bytes under this node (files and raw nodes).
    pub filesize: Option<u64>,
    /// File bytes under each link, in link order.
    pub blocksizes: Vec<u64>,
    /// HAMT hash function (0x22, murmur3-x64-64).
    pub hash_type: Option<u64>,
    /// HAMT fanout.
    pub fanout: Option<u64>,
    /// POSIX mode bits.
    pub mode: Option<u32>,
    /// Modification time.
    pub mtime: Option<UnixTime>,
}

impl UnixFsData {
    /// Metadata of the given kind with nothing else set.
    pub fn new(kind: DataType) -> Self {
        Self {
            kind,
            data: None,
            filesize: None,
            blocksizes: Vec::new(),
            hash_type: None,
            fanout: None,
            mode: None,
            mtime: None,
        }
    }

    /// A file chunk holding `data` inline (a dag-pb leaf).
    pub fn file_leaf(data: &[u8]) -> Self {
        Self {
            data: (!data.is_empty()).then(|| data.to_vec()),
            filesize: Some(data.len() as u64),
            ..Self::new(DataType::File)
        }
    }

    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            16 + self.data.as_ref().map_or(0, Vec::len) + 4 * self.blocksizes.len(),
        );
        out.push(0x08);
        varint::encode(self.kind as u64, &mut out);
        if let Some(data) = self.data.as_ref().filter(|d| !d.is_empty()) {
            out.push(0x12);
            varint::encode(data.len() as u64, &mut out);
            out.extend_from_slice(data);
        }
        if let Some(size) = self.filesize {
            out.push(0x18);
            varint::encode(size, &mut out);
        }
        for size in &self.blocksizes {
            out.push(0x20);
            varint::encode(*size, &mut out);
        }
        for (tag, value) in
            [(0x28, self.hash_type), (0x30, self.fanout), (0x38, self.mode.map(u64::from))]
        {
            if let Some(value) = value {
                out.push(tag);
                varint::encode(value, &mut out);
            }
        }
        if let Some(mtime) = self.mtime {
            let mut inner = vec![0x08];
            varint::encode(mtime.seconds as u64, &mut inner);
            if let Some(nanos) = mtime.nanos {
                inner.push(0x15);
                inner.extend_from_slice(&nanos.to_le_bytes());
            }
            out.push(0x42);
            varint::encode(inner.len() as u64, &mut out);
            out.extend_from_slice(&inner);
        }
        out
    }

    /// Decodes the message. `blocksizes` beyond `max_blocksizes` are an error (a node's links
    /// bound how many there can honestly be).
    pub fn decode(bytes: &[u8], max_blocksizes: usize) -> Result<Self, UnixFsError> {
        let mut kind = None;
        let mut out = Self::new(DataType::Raw);
        let mut rest = bytes;
        while !rest.is_empty() {
            let (tag, n) = varint::decode(rest)?;
            rest = &rest[n..];
            let (field, wire_type) = (tag >> 3, tag & 7);
            match wire_type {
                0 => {
                    let (value, n) = varint::decode(rest)?;
                    rest = &rest[n..];
                    match field {
                        1 => kind = Some(DataType::from_u64(value)?),
                        3 => out.filesize = Some(value),
                        4 => {
                            if out.blocksizes.len() >= max_blocksizes {
                                return Err(UnixFsError::TooManyBlockSizes);
                            }
                            out.blocksizes.push(value);
                        }
                        5 => out.hash_type = Some(value),
                        6 => out.fanout = Some(value),
                        7 => out.mode = Some(value as u32),
                        _ => return Err(UnixFsError::UnexpectedField { field, wire_type }),
                    }
                }
                2 => {
                    let (len, n) = varint::decode(rest)?;
                    rest = &rest[n..];
                    let len = usize::try_from(len).map_err(|_| UnixFsError::Truncated)?;
                    if len > rest.len() {
                        return Err(UnixFsError::Truncated);
                    }
                    let (body, next) = rest.split_at(len);
                    rest = next;
                    match field {
                        2 => out.data = Some(body.to_vec()),
                        4 => {
                            // Packed blocksizes: accepted on read, never written.
                            let mut packed = body;
                            while !packed.is_empty() {
                                if out.blocksizes.len() >= max_blocksizes {
                                    return Err(UnixFsError::TooManyBlockSizes);
                                }
                                let (value, n) = varint::decode(packed)?;
                                packed = &packed[n..];
                                out.blocksizes.push(value);
                            }
                        }
                        8 => out.mtime = Some(decode_mtime(body)?),
                        _ => return Err(UnixFsError::UnexpectedField { field, wire_type }),
                    }
                }
                _ => return Err(UnixFsError::UnexpectedField { field, wire_type }),
            }
        }
        out.kind = kind.ok_or(UnixFsError::MissingType)?;
        Ok(out)
    }
}

fn decode_mtime(mut bytes: &[u8]) -> Result<UnixTime, UnixFsError> {
    let mut time = UnixTime { seconds: 0, nanos: None };
    while !bytes.is_empty() {
        let (tag, n) = varint::decode(bytes)?;
        bytes = &bytes[n..];
        match (tag >> 3, tag & 7) {
            (1, 0) => {
                let (v, n) = varint::decode(bytes)?;
                bytes = &bytes[n..];
                time.seconds = v as i64;
            }
            (2, 5) => {
                let raw: [u8; 4] =
                    bytes.get(..4).and_then(|b| b.try_into().ok()).ok_or(UnixFsError::Truncated)?;
                bytes = &bytes[4..];
                time.nanos = Some(u32::from_le_bytes(raw));
            }
            (field, wire_type) => return Err(UnixFsError::UnexpectedField { field, wire_type }),
        }
    }
    Ok(time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        // An empty file and an empty directory, as kubo and Helia write them.
        assert_eq!(UnixFsData::file_leaf(&[]).encode(), [0x08, 0x02, 0x18, 0x00]);
        assert_eq!(UnixFsData::new(DataType::Directory).encode(), [0x08, 0x01]);
        let leaf = UnixFsData::file_leaf(b"hi");
        assert_eq!(leaf.encode(), [0x08, 0x02, 0x12, 0x02, b'h', b'i', 0x18, 0x02]);
        let parent = UnixFsData {
            filesize: Some(300),
            blocksizes: vec![256, 44],
            ..UnixFsData::new(DataType::File)
        };
        assert_eq!(parent.encode(), [0x08, 0x02, 0x18, 0xac, 0x02, 0x20, 0x80, 0x02, 0x20, 0x2c]);
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(UnixFsData::decode(&[], 10), Err(UnixFsError::MissingType));
        assert_eq!(UnixFsData::decode(&[0x08, 0x09], 10), Err(UnixFsError::UnknownType(9)));
        assert_eq!(UnixFsData::decode(&[0x08, 0x02, 0x12, 0x09], 10), Err(UnixFsError::Truncated));
        assert_eq!(
            UnixFsData::decode(&[0x08, 0x02, 0x20, 1, 0x20, 2], 1),
            Err(UnixFsError::TooManyBlockSizes)
        );
        assert!(matches!(
            UnixFsData::decode(&[0x08, 0x02, 0x48, 0x01], 1),
            Err(UnixFsError::UnexpectedField { field: 9, .. })
        ));
    }

    proptest! {
        #[test]
        fn round_trip(kind in 0u64..6, data in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..64)),
                      filesize: Option<u64>, blocksizes in proptest::collection::vec(any::<u64>(), 0..8),
                      mode: Option<u32>, seconds: i64, nanos: Option<u32>, with_time: bool) {
            let msg = UnixFsData {
                kind: DataType::from_u64(kind).unwrap(),
                data,
                filesize,
                blocksizes,
                hash_type: None,
                fanout: None,
                mode,
                mtime: with_time.then_some(UnixTime { seconds, nanos }),
            };
            prop_assert_eq!(UnixFsData::decode(&msg.encode(), 8).unwrap(), msg);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = UnixFsData::decode(&bytes, 16);
        }
    }
}
