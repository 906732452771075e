//! Backups: `estuary oracle backup DIR` while the oracle runs, `estuary oracle restore DIR` into
//! a stopped (fresh) one.
//!
//! ```text
//!  DIR/manifest.json     what the backup holds: when, which database, its cursors and job
//!                        count, the blocks' and packed CARs' totals (written last: a backup
//!                        without it is incomplete)
//!  DIR/oracle.sqlite     SQLite: a consistent copy (VACUUM INTO)
//!  DIR/oracle.pgdump     PostgreSQL: pg_dump --format=custom of one snapshot
//!  DIR/blocks.manifest   every block: "<cid> <size>" per line
//!  DIR/blocks/…          the blocks (hard links when the store is a directory on the same
//!                        filesystem, copies otherwise)
//!  DIR/packed/…          the packed CARs (hard links or copies)
//! ```
//!
//! Consistency: the backup holds garbage collection off ([`crate::gc::GcGate`]) for its whole
//! length, then copies the database, then the blocks and CARs. Every block a pin in the copy
//! needs was in the store when the copy was made and no collection ran since, so it is in the
//! backup; blocks written after the copy come along too, harmlessly. A restore checks every
//! block against its CID and the manifest, every CAR's size, and that the restored database's
//! cursors are the manifest's: the restored oracle resumes reading the chain where the backup
//! left it, and the requests made since are read again (each once: requests are keyed by their
//! id).

use std::{
    fs,
    io::{BufRead, Write},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use cid::Cid;
use serde::{Deserialize, Serialize};

use crate::{
    blockstore::{Blockstore, BlockstoreError, FsBlockstore, sync_dir, write_atomically},
    domain::now_ms,
    gc::GcGate,
    store::{DatabaseUrl, Store, StoreError, Summary, summarize_sqlite},
};

/// The manifest's format version.
pub const VERSION: u32 = 1;

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`VERSION`].
    pub version: u32,
    /// When it was taken (unix ms).
    pub created_ms: u64,
    /// `sqlite` or `postgres`.
    pub database: String,
    /// The database copy's file in the backup.
    pub database_file: String,
    /// The copy's cursors and job count.
    pub summary: Summary,
    /// Blocks.
    pub blocks: u64,
    /// Their bytes.
    pub block_bytes: u64,
    /// Packed CARs: (file name, size).
    pub packed: Vec<(String, u64)>,
}

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The target is not empty (a backup directory), or holds a database already (a restore).
    #[error("{0}")]
    NotFresh(String),
    /// The backup is incomplete or does not match its manifest.
    #[error("the backup does not match its manifest: {0}")]
    Damaged(String),
    /// `pg_dump` or `pg_restore` is missing or failed.
    #[error("{0}")]
    Postgres(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blockstore failed.
    #[error(transparent)]
    Blockstore(#[from] BlockstoreError),
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[allow(clippy::needless_pass_by_value, reason = "used as `map_err(json_error)`")]
fn json_error(e: serde_json::Error) -> BackupError {
    BackupError::Damaged(e.to_string())
}

/// Takes a backup of the running oracle's database (`db`, open as `store`), blockstore and
/// packed CARs into `dir` (created; it must be empty).
pub async fn backup<B: Blockstore>(
    store: &Store,
    db: &DatabaseUrl,
    blocks: &Arc<B>,
    packed_dir: &Path,
    dir: &Path,
) -> Result<Manifest, BackupError> {
    if dir.exists() && fs::read_dir(dir)?.next().is_some() {
        return Err(BackupError::NotFresh(format!("{} is not empty", dir.display())));
    }
    fs::create_dir_all(dir)?;
    let hold = GcGate::new(store.clone(), Duration::from_secs(600))
        .hold(&format!("backup-{}", hex::encode(rand::random::<[u8; 8]>())))
        .await?;
    let (database, database_file, summary) = match db {
        DatabaseUrl::Sqlite(_) => {
            let file = dir.join("oracle.sqlite");
            store.vacuum_into(&file).await?;
            ("sqlite", "oracle.sqlite", summarize_sqlite(&file).await?)
        }
        DatabaseUrl::Postgres(url) => {
            let file = dir.join("oracle.pgdump");
            let (summary, dumped) = store
                .with_snapshot(|snapshot| {
                    let (url, file) = (url.clone(), file.clone());
                    async move {
                        tokio::process::Command::new("pg_dump")
                            .args(["--format=custom", "--no-owner", "--snapshot", &snapshot])
                            .arg("--file")
                            .arg(&file)
                            .arg(&url)
                            .output()
                            .await
                    }
                })
                .await?;
            match dumped {
                Ok(out) if out.status.success() => {}
                Ok(out) => {
                    return Err(BackupError::Postgres(format!(
                        "pg_dump failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    )));
                }
                Err(e) => {
                    return Err(BackupError::Postgres(format!(
                        "pg_dump (PostgreSQL's client tools) is needed on PATH: {e}"
                    )));
                }
            }
            ("postgres", "oracle.pgdump", summary)
        }
    };
    let (blocks, dir_owned, packed_dir) =
        (Arc::clone(blocks), dir.to_path_buf(), packed_dir.to_path_buf());
    let copied = tokio::task::spawn_blocking(move || copy_data(&*blocks, &packed_dir, &dir_owned))
        .await
        .expect("copying a backup does not panic");
    hold.release().await?;
    let (count, bytes, packed) = copied?;
    let manifest = Manifest {
        version: VERSION,
        created_ms: now_ms(),
        database: database.into(),
        database_file: database_file.into(),
        summary,
        blocks: count,
        block_bytes: bytes,
        packed,
    };
    let text = serde_json::to_vec_pretty(&manifest).map_err(json_error)?;
    write_atomically(&dir.join("manifest.json"), &text)?;
    Ok(manifest)
}

/// Hard-links `from` to `to`, or copies it (another filesystem, or links not allowed).
fn link_or_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)?;
    }
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    let tmp = to.with_extension("part");
    fs::copy(from, &tmp)?;
    fs::File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, to)
}

/// What [`copy_data`] copied: blocks, their bytes, and the packed CARs (name, size).
type Copied = (u64, u64, Vec<(String, u64)>);

/// Copies every block of `blocks` and every packed CAR into `dir`; the blocks' count and bytes
/// and the CARs.
fn copy_data<B: Blockstore + ?Sized>(
    blocks: &B,
    packed_dir: &Path,
    dir: &Path,
) -> Result<Copied, BackupError> {
    let target = FsBlockstore::open(dir)?;
    let mut listed = Vec::new();
    blocks.list(&mut |l| {
        listed.push(l);
        true
    })?;
    let mut manifest = std::io::BufWriter::new(fs::File::create(dir.join("blocks.manifest"))?);
    let (mut count, mut bytes) = (0u64, 0u64);
    for l in listed {
        let linked = match (blocks.file_of(&l.cid), target.file_of(&l.cid)) {
            (Some(from), Some(to)) => link_or_copy(&from, &to).is_ok(),
            _ => false,
        };
        let size = if linked {
            l.size
        } else {
            // Read through the store (verified); a block gone or set aside since the listing
            // is left out.
            match blocks.get(&l.cid)? {
                Some(data) => {
                    target.put_verified(&l.cid, &data)?;
                    data.len() as u64
                }
                None => continue,
            }
        };
        writeln!(manifest, "{} {size}", l.cid)?;
        count += 1;
        bytes += size;
    }
    manifest.flush()?;
    manifest.get_ref().sync_all()?;
    let mut packed = Vec::new();
    if let Ok(entries) = fs::read_dir(packed_dir) {
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".car") || !entry.metadata()?.is_file() {
                continue;
            }
            let to = dir.join("packed").join(&name);
            link_or_copy(&entry.path(), &to)?;
            packed.push((name, fs::metadata(&to)?.len()));
        }
    }
    packed.sort();
    if dir.join("packed").exists() {
        sync_dir(&dir.join("packed"))?;
    }
    sync_dir(dir)?;
    Ok((count, bytes, packed))
}

/// Reads a backup's manifest.
pub fn manifest(dir: &Path) -> Result<Manifest, BackupError> {
    let text = fs::read(dir.join("manifest.json")).map_err(|e| {
        BackupError::Damaged(format!(
            "no manifest.json in {} ({e}): not a whole backup",
            dir.display()
        ))
    })?;
    let manifest: Manifest = serde_json::from_slice(&text).map_err(json_error)?;
    if manifest.version != VERSION {
        return Err(BackupError::Damaged(format!("manifest version {}", manifest.version)));
    }
    Ok(manifest)
}

/// Restores the backup in `dir` into a stopped oracle: its database `db` (an SQLite file that
/// must not exist, or an empty PostgreSQL database), its blockstore `blocks` and its packed
/// CARs' directory. Every block is checked against its CID and the manifest, and the restored
/// database's cursors against the manifest's.
pub async fn restore<B: Blockstore>(
    dir: &Path,
    db: &DatabaseUrl,
    blocks: &Arc<B>,
    packed_dir: &Path,
) -> Result<Manifest, BackupError> {
    let manifest = manifest(dir)?;
    match (db, manifest.database.as_str()) {
        (DatabaseUrl::Sqlite(path), "sqlite") => {
            if path.exists() {
                return Err(BackupError::NotFresh(format!(
                    "{} exists: restore into a fresh database",
                    path.display()
                )));
            }
            let from = dir.join(&manifest.database_file);
            let tmp = path.with_extension("restoring");
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent)?;
            }
            fs::copy(&from, &tmp)?;
            fs::File::open(&tmp)?.sync_all()?;
            fs::rename(&tmp, path)?;
        }
        (DatabaseUrl::Postgres(url), "postgres") => {
            let out = tokio::process::Command::new("pg_restore")
                .args(["--no-owner", "--exit-on-error", "--dbname", url])
                .arg(dir.join(&manifest.database_file))
                .output()
                .await
                .map_err(|e| {
                    BackupError::Postgres(format!(
                        "pg_restore (PostgreSQL's client tools) is needed on PATH: {e}"
                    ))
                })?;
            if !out.status.success() {
                return Err(BackupError::Postgres(format!(
                    "pg_restore failed (restore into an empty database): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        (_, kind) => {
            return Err(BackupError::NotFresh(format!(
                "the backup holds a {kind} database; restore it into one of the same kind"
            )));
        }
    }
    let (source, target, packed_dir, dir_owned) =
        (FsBlockstore::open(dir)?, Arc::clone(blocks), packed_dir.to_path_buf(), dir.to_path_buf());
    let expected = manifest.clone();
    tokio::task::spawn_blocking(move || {
        restore_data(&source, &*target, &dir_owned, &packed_dir, &expected)
    })
    .await
    .expect("restoring does not panic")?;
    // The schema is brought up to date, and the cursors are where the backup left them.
    let store = Store::open(db).await?;
    let restored = store.summary().await?;
    if restored != manifest.summary {
        return Err(BackupError::Damaged(format!(
            "the restored database has cursors {:?} and {} jobs; the manifest says {:?} and {}",
            restored.cursors, restored.jobs, manifest.summary.cursors, manifest.summary.jobs
        )));
    }
    Ok(manifest)
}

fn restore_data<B: Blockstore + ?Sized>(
    source: &FsBlockstore,
    target: &B,
    dir: &Path,
    packed_dir: &Path,
    manifest: &Manifest,
) -> Result<(), BackupError> {
    let lines = std::io::BufReader::new(fs::File::open(dir.join("blocks.manifest"))?);
    let (mut count, mut bytes) = (0u64, 0u64);
    for line in lines.lines() {
        let line = line?;
        let bad = || BackupError::Damaged(format!("blocks.manifest: {line:?}"));
        let (cid, size) = line.split_once(' ').ok_or_else(bad)?;
        let cid = Cid::try_from(cid).map_err(|_| bad())?;
        let size: u64 = size.parse().map_err(|_| bad())?;
        // Read back verified: a block that does not match its CID is set aside, and missing.
        let data = source
            .get(&cid)?
            .ok_or_else(|| BackupError::Damaged(format!("block {cid} is missing or corrupt")))?;
        if data.len() as u64 != size {
            return Err(BackupError::Damaged(format!(
                "block {cid} has {} bytes, not {size}",
                data.len()
            )));
        }
        target.put_verified(&cid, &data)?;
        count += 1;
        bytes += size;
    }
    if (count, bytes) != (manifest.blocks, manifest.block_bytes) {
        return Err(BackupError::Damaged(format!(
            "{count} blocks of {bytes} bytes; the manifest says {} of {}",
            manifest.blocks, manifest.block_bytes
        )));
    }
    fs::create_dir_all(packed_dir)?;
    for (name, size) in &manifest.packed {
        let from = dir.join("packed").join(name);
        let found = fs::metadata(&from).map(|m| m.len()).unwrap_or(u64::MAX);
        if found != *size {
            return Err(BackupError::Damaged(format!("packed/{name}: {found} bytes, not {size}")));
        }
        let to: PathBuf = packed_dir.join(name);
        link_or_copy(&from, &to)?;
    }
    sync_dir(packed_dir)?;
    Ok(())
}
