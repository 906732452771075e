//! A throwaway PostgreSQL server for tests, from the machine's server binaries (Debian's
//! `postgresql` package; `scripts/setup --browser` installs it). Shared by the oracle's store
//! suite and the CLI's multi-process test (`#[path]`-included there).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// A PostgreSQL server of its own in a temporary directory, on a free loopback port; stopped
/// when dropped.
pub struct Postgres {
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    port: u16,
}

fn pg_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("ESTUARY_PG_BIN") {
        return dir.into();
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect(
            "PostgreSQL server binaries (apt: postgresql; scripts/setup --browser installs them)",
        )
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().expect("no /usr/lib/postgresql/*/bin/initdb")
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root (initdb refuses root).
fn pg_run(bin: &Path, tool: &str, args: &[&str]) {
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let tool = bin.join(tool);
    let output = if root {
        Command::new("runuser").args(["-u", "postgres", "--"]).arg(&tool).args(args).output()
    } else {
        Command::new(&tool).args(args).output()
    }
    .expect("run a PostgreSQL tool");
    assert!(
        output.status.success(),
        "{} failed: {}{}",
        tool.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Postgres {
    /// Starts a server (initdb, pg_ctl start) and waits until it accepts connections.
    pub fn start() -> Postgres {
        let bin = pg_bin();
        let dir = tempfile::Builder::new().prefix("estuary-pg-").tempdir().unwrap();
        let _ = Command::new("chmod").arg("0777").arg(dir.path()).status();
        let data = dir.path().join("data");
        let data_s = data.to_str().unwrap().to_owned();
        pg_run(
            &bin,
            "initdb",
            &["-D", &data_s, "-U", "estuary", "--auth=trust", "--no-sync", "-E", "UTF8"],
        );
        let port = estuary_chain::devnet::free_port().unwrap();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100",
            dir.path().display()
        );
        let log = dir.path().join("log").to_str().unwrap().to_owned();
        pg_run(&bin, "pg_ctl", &["-D", &data_s, "-o", &opts, "-l", &log, "-w", "start"]);
        Postgres { _dir: dir, data, bin, port }
    }

    /// A URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://estuary@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data.to_str().unwrap().to_owned();
        pg_run(&self.bin, "pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
}
