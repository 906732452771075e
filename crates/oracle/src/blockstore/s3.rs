//! [`Blockstore`] on S3-compatible object storage, for oracles on several machines.
//!
//! One object per block, `<prefix>/blocks/<shard>/<cid>` as on the filesystem, and staging
//! areas under `<prefix>/staging/<name>/…` (a promotion is a server-side copy, then the staged
//! object is deleted). An S3 `PUT` is atomic — an object is either whole or absent — so there is
//! no temporary name to rename; storing a block again re-writes it, which refreshes its time.
//! Blocks are verified before they are stored and when they are read back; a corrupt object is
//! moved to `quarantine/` so the block is fetched again. The client is the `object_store` crate (the Apache
//! Arrow project's), which signs requests (SigV4), retries with backoff and reads the usual
//! `AWS_*` settings from the environment.
//!
//! The [`Blockstore`] port is synchronous (its callers run on blocking threads), so each call
//! drives its request on the runtime it was created in.

use std::{sync::Arc, time::SystemTime};

use cid::Cid;
use estuary_dag::car::verify;
use futures_util::StreamExt;
use object_store::{ObjectStore, PutPayload, aws::AmazonS3Builder, path::Path as ObjectPath};
use tokio::runtime::Handle;

use super::{Blockstore, BlockstoreError, Listed, valid_stage};

/// Where and how to reach the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// `s3://bucket` or `s3://bucket/prefix`.
    pub url: String,
    /// An endpoint other than AWS's (`http://127.0.0.1:9000` for a local server); plain HTTP is
    /// allowed only when given here.
    pub endpoint: Option<String>,
    /// Region (default `us-east-1`).
    pub region: Option<String>,
    /// Access key id and secret, when not from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`.
    pub credentials: Option<(String, String)>,
}

/// Blocks in an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Blockstore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    runtime: Handle,
}

fn s3_error(e: object_store::Error) -> BlockstoreError {
    BlockstoreError::Io(std::io::Error::other(e))
}

impl S3Blockstore {
    /// Connects to the bucket in `config` (credentials from `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY` and the rest of the environment). Must be called inside a Tokio
    /// runtime, which then serves every request.
    pub fn open(config: &S3Config) -> Result<Self, BlockstoreError> {
        let rest = config.url.strip_prefix("s3://").ok_or_else(|| {
            BlockstoreError::Io(std::io::Error::other(format!(
                "blockstore URL {:?} does not start with s3://",
                config.url
            )))
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(config.region.clone().unwrap_or_else(|| "us-east-1".into()));
        if let Some((id, secret)) = &config.credentials {
            builder = builder.with_access_key_id(id).with_secret_access_key(secret);
        }
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let store = builder.build().map_err(s3_error)?;
        let runtime = Handle::try_current()
            .map_err(|e| BlockstoreError::Io(std::io::Error::other(e.to_string())))?;
        Ok(Self { store: Arc::new(store), prefix: prefix.trim_matches('/').to_owned(), runtime })
    }

    fn quarantine_key(&self, cid: &Cid) -> ObjectPath {
        let key = format!("quarantine/{cid}");
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    fn under(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    fn key(&self, cid: &Cid) -> ObjectPath {
        let shard = cid.hash().digest().last().map_or(0, |b| *b);
        self.under(&format!("blocks/{shard:02x}/{cid}"))
    }

    fn staged_key(&self, stage: &str, cid: &Cid) -> Result<ObjectPath, BlockstoreError> {
        if !valid_stage(stage) {
            return Err(BlockstoreError::Io(std::io::Error::other(format!(
                "{stage:?} is not a staging area's name"
            ))));
        }
        let shard = cid.hash().digest().last().map_or(0, |b| *b);
        Ok(self.under(&format!("staging/{stage}/{shard:02x}/{cid}")))
    }

    /// Reads an object and verifies it against `cid`; one that does not match is moved to
    /// `quarantine/` and reads as absent.
    fn read_verified(
        &self,
        cid: &Cid,
        key: &ObjectPath,
    ) -> Result<Option<Vec<u8>>, BlockstoreError> {
        let fetched = self.runtime.block_on(async {
            match self.store.get(key).await {
                Ok(result) => result.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        let Some(bytes) = fetched.map_err(s3_error)? else { return Ok(None) };
        if verify(cid, &bytes).is_err() {
            // Set aside (copied to quarantine/, then removed), so it is fetched again.
            let aside = self.quarantine_key(cid);
            self.runtime
                .block_on(async {
                    self.store.copy(key, &aside).await?;
                    self.store.delete(key).await
                })
                .map_err(s3_error)?;
            tracing::warn!(%cid, "a block failed verification; moved to quarantine/");
            return Ok(None);
        }
        Ok(Some(bytes.to_vec()))
    }

    /// Every object under `prefix`, with its size and time.
    fn objects(
        &self,
        prefix: &ObjectPath,
        each: &mut dyn FnMut(&ObjectPath, u64, SystemTime) -> bool,
    ) -> Result<(), BlockstoreError> {
        self.runtime.block_on(async {
            let mut listing = self.store.list(Some(prefix));
            while let Some(meta) = listing.next().await {
                let meta = meta.map_err(s3_error)?;
                if !each(&meta.location, meta.size, SystemTime::from(meta.last_modified)) {
                    break;
                }
            }
            Ok(())
        })
    }
}

impl Blockstore for S3Blockstore {
    fn put(&self, cid: &Cid, data: &[u8]) -> Result<(), BlockstoreError> {
        verify(cid, data).map_err(|_| BlockstoreError::Mismatch(*cid))?;
        self.put_verified(cid, data)
    }

    fn put_verified(&self, cid: &Cid, data: &[u8]) -> Result<(), BlockstoreError> {
        let key = self.key(cid);
        let payload = PutPayload::from(data.to_vec());
        self.runtime.block_on(self.store.put(&key, payload)).map_err(s3_error)?;
        Ok(())
    }

    fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>, BlockstoreError> {
        self.read_verified(cid, &self.key(cid))
    }

    fn has(&self, cid: &Cid) -> Result<bool, BlockstoreError> {
        let key = self.key(cid);
        match self.runtime.block_on(self.store.head(&key)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(s3_error(e)),
        }
    }

    fn list(&self, each: &mut dyn FnMut(Listed) -> bool) -> Result<(), BlockstoreError> {
        self.objects(&self.under("blocks"), &mut |location, size, modified| match location
            .filename()
            .and_then(|name| Cid::try_from(name).ok())
        {
            Some(cid) => each(Listed { cid, size, modified }),
            None => true,
        })
    }

    fn delete(&self, cid: &Cid) -> Result<(), BlockstoreError> {
        match self.runtime.block_on(self.store.delete(&self.key(cid))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(s3_error(e)),
        }
    }

    fn put_staged(&self, stage: &str, cid: &Cid, data: &[u8]) -> Result<(), BlockstoreError> {
        let key = self.staged_key(stage, cid)?;
        let payload = PutPayload::from(data.to_vec());
        self.runtime.block_on(self.store.put(&key, payload)).map_err(s3_error)?;
        Ok(())
    }

    fn get_staged(&self, stage: &str, cid: &Cid) -> Result<Option<Vec<u8>>, BlockstoreError> {
        self.read_verified(cid, &self.staged_key(stage, cid)?)
    }

    fn promote(&self, stage: &str, cid: &Cid) -> Result<(), BlockstoreError> {
        let from = self.staged_key(stage, cid)?;
        let to = self.key(cid);
        self.runtime
            .block_on(async {
                self.store.copy(&from, &to).await?;
                self.store.delete(&from).await
            })
            .map_err(s3_error)
    }

    fn stages(&self) -> Result<Vec<(String, SystemTime)>, BlockstoreError> {
        let mut found: std::collections::BTreeMap<String, SystemTime> = Default::default();
        let root = self.under("staging");
        let depth = root.parts().count();
        self.objects(&root, &mut |location, _, modified| {
            if let Some(name) = location.parts().nth(depth) {
                let name = name.as_ref().to_owned();
                if valid_stage(&name) {
                    let latest = found.entry(name).or_insert(modified);
                    *latest = (*latest).max(modified);
                }
            }
            true
        })?;
        Ok(found.into_iter().collect())
    }

    fn remove_stage(&self, stage: &str) -> Result<u64, BlockstoreError> {
        if !valid_stage(stage) {
            return Ok(0);
        }
        let mut keys = Vec::new();
        let mut bytes = 0;
        self.objects(&self.under(&format!("staging/{stage}")), &mut |location, size, _| {
            keys.push(location.clone());
            bytes += size;
            true
        })?;
        for key in keys {
            match self.runtime.block_on(self.store.delete(&key)) {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(s3_error(e)),
            }
        }
        Ok(bytes)
    }
}
