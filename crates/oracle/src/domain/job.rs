//! Who a job is for and how it is named: a [`JobSource`] and a [`JobId`], together a [`JobKey`].
//!
//! A key is written the same way everywhere — in the database, on the command line, in logs:
//! `contract/<chain id>/<address>/<request id>` for a request made on chain, and
//! `api/<account>/<request id>` for a pin made through the Pinning Service API. Two sources can
//! never be confused: request 3 of one contract is not request 3 of another.

use std::{fmt, str::FromStr};

use alloy::primitives::{Address, U256};

/// Where a job comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobSource {
    /// A contract on a chain (`EstuaryPinning` requests, `EstuaryOracle` jobs).
    Contract {
        /// EIP-155 chain id.
        chain: u64,
        /// The contract.
        address: Address,
    },
    /// The IPFS Pinning Service API, for one account.
    PinningApi {
        /// The account (a token's name).
        account: String,
    },
}

/// A job's id within its source: a request id (decimal) or a pin's request id (a UUID).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(String);

/// A job, named unambiguously.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobKey {
    /// Where it comes from.
    pub source: JobSource,
    /// Its id there.
    pub id: JobId,
}

/// Why text is not a key (or a source, or an id).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} is not a job key: {why} (keys read contract/<chain>/<address>/<id> or api/<account>/<id>)"
)]
pub struct BadKey {
    /// The text.
    pub text: String,
    /// What is wrong.
    pub why: &'static str,
}

/// Whether `name` may be an account: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn valid_account(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl JobSource {
    /// The request id of this source's request `id`, if this is a contract source.
    pub fn contract(&self) -> Option<(u64, Address)> {
        match self {
            Self::Contract { chain, address } => Some((*chain, *address)),
            Self::PinningApi { .. } => None,
        }
    }
}

impl fmt::Display for JobSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Contract { chain, address } => write!(f, "contract/{chain}/{address:#x}"),
            Self::PinningApi { account } => write!(f, "api/{account}"),
        }
    }
}

impl FromStr for JobSource {
    type Err = BadKey;

    fn from_str(text: &str) -> Result<Self, BadKey> {
        let bad = |why| BadKey { text: text.to_owned(), why };
        match text.split('/').collect::<Vec<_>>().as_slice() {
            ["contract", chain, address] => Ok(Self::Contract {
                chain: chain.parse().map_err(|_| bad("the chain id is not a number"))?,
                address: address.parse().map_err(|_| bad("not an address"))?,
            }),
            ["api", account] if valid_account(account) => {
                Ok(Self::PinningApi { account: (*account).to_owned() })
            }
            ["api", _] => Err(bad("not an account name")),
            _ => Err(bad("unknown source")),
        }
    }
}

impl JobId {
    /// The id of an on-chain request (its `uint256` id, in decimal).
    pub fn request(id: U256) -> Self {
        Self(id.to_string())
    }

    /// The id of a pin (its request id, a UUID as the API writes it).
    pub fn pin(requestid: &str) -> Result<Self, BadKey> {
        let ok = requestid.len() == 36
            && requestid.bytes().enumerate().all(|(i, b)| {
                if [8, 13, 18, 23].contains(&i) { b == b'-' } else { b.is_ascii_hexdigit() }
            });
        if ok {
            Ok(Self(requestid.to_ascii_lowercase()))
        } else {
            Err(BadKey { text: requestid.to_owned(), why: "a pin's request id is a UUID" })
        }
    }

    /// The id as a request id, for an on-chain request.
    pub fn as_request(&self) -> Option<U256> {
        U256::from_str_radix(&self.0, 10).ok()
    }

    /// The id as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An id read back from the database (written by [`request`](Self::request) or
    /// [`pin`](Self::pin)).
    pub fn stored(text: String) -> Self {
        Self(text)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JobKey {
    /// Request `id` of `contract` on `chain`.
    pub fn request(chain: u64, contract: Address, id: U256) -> Self {
        Self { source: JobSource::Contract { chain, address: contract }, id: JobId::request(id) }
    }
}

impl fmt::Display for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.source, self.id)
    }
}

impl FromStr for JobKey {
    type Err = BadKey;

    fn from_str(text: &str) -> Result<Self, BadKey> {
        let bad = |why| BadKey { text: text.to_owned(), why };
        let (source, id) = text.rsplit_once('/').ok_or_else(|| bad("no id"))?;
        let source: JobSource = source.parse().map_err(|e: BadKey| bad(e.why))?;
        let id = match &source {
            JobSource::Contract { .. } => {
                let n = U256::from_str_radix(id, 10)
                    .ok()
                    .filter(|_| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| bad("a request id is a decimal number"))?;
                JobId::request(n)
            }
            JobSource::PinningApi { .. } => JobId::pin(id).map_err(|e| bad(e.why))?,
        };
        Ok(Self { source, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_never_collide() {
        let a = JobKey::request(31337, Address::repeat_byte(0xab), U256::from(3));
        let b = JobKey::request(31337, Address::repeat_byte(0xcd), U256::from(3));
        assert_ne!(a, b);
        assert_ne!(a.to_string(), b.to_string());
        for key in [a, b] {
            assert_eq!(key.to_string().parse::<JobKey>().unwrap(), key);
        }
        let pin: JobKey = "api/alice/123e4567-e89b-42d3-a456-426614174000".parse().unwrap();
        assert_eq!(pin.source, JobSource::PinningApi { account: "alice".into() });
        assert_eq!(pin.to_string().parse::<JobKey>().unwrap(), pin);
        for bad in [
            "3",
            "contract/31337/0xab/3",
            "contract/x/0xabababababababababababababababababababab/3",
            "contract/31337/0xabababababababababababababababababababab/-3",
            "contract/31337/0xabababababababababababababababababababab/",
            "api/al ice/123e4567-e89b-42d3-a456-426614174000",
            "api/alice/not-a-uuid",
            "dao/1/2",
        ] {
            assert!(bad.parse::<JobKey>().is_err(), "{bad}");
        }
    }
}
