//! The command sealer: a command template, run with the piece file and the deal's terms, that
//! hands them to the provider's own stack and prints the deal ID once the deal is published.
//!
//! The template is run by `sh -c`; `{name}` placeholders are replaced by shell-quoted values,
//! and the same values are in the environment as `ESTUARY_<NAME>`:
//!
//! | placeholder | value |
//! |---|---|
//! | `{piece_path}` | the CAR file |
//! | `{piece_cid}` / `{piece_cid_v2}` | the piece CID v1 (as the deal names it) / v2 |
//! | `{padded_size}` / `{car_size}` | the piece's padded size / the CAR's size |
//! | `{proposal}` | the deal proposal CBOR (hex, `0x…`), this miner as provider |
//! | `{proposal_id}` | the offer's id (`getDealProposal(id)` on the contract) |
//! | `{contract}` | the client contract |
//! | `{miner}` | the miner (`f0…`) |
//! | `{start_epoch}` / `{end_epoch}` | the deal's epochs |
//! | `{kind}` | `slot` or `proposal` |
//!
//! The last line the command prints on stdout must end with the deal ID. A command that exits
//! with an error, runs past its timeout (it is killed) or prints no deal ID is retried later.
//! Output is read up to 64 KiB. Activation is read from the chain: a slot's deal is active when
//! `PerpetualStorage.publish` would go through; a proposal's when the `DealClient` recorded it
//! (or, on the local chain, when the simulated market says so).

use std::{process::Stdio, time::Duration};

use tokio::io::AsyncReadExt;

use super::{SealError, SealJob, SealProgress, Sealer};
use crate::{chain::ChainClient, domain::WorkKind};

/// Most output read from the command.
const MAX_OUTPUT: u64 = 64 * 1024;

/// Runs a command to seal.
#[derive(Debug)]
pub struct CommandSealer {
    chain: ChainClient,
    template: String,
    timeout: Duration,
}

/// `s` quoted for `sh`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl CommandSealer {
    /// A sealer running `template` (see the module's docs), killed after `timeout`.
    pub fn new(chain: ChainClient, template: String, timeout: Duration) -> Self {
        Self { chain, template, timeout }
    }

    /// The values the template and the environment get.
    pub fn values(job: &SealJob) -> Vec<(&'static str, String)> {
        vec![
            ("piece_path", job.piece_path.display().to_string()),
            ("piece_cid", job.piece_v1.clone()),
            ("piece_cid_v2", job.piece_v2.clone()),
            ("padded_size", job.padded_size.to_string()),
            ("car_size", job.car_size.to_string()),
            ("proposal", format!("0x{}", hex::encode(&job.proposal))),
            ("proposal_id", format!("{:#x}", job.proposal_id)),
            ("contract", format!("{:#x}", job.contract)),
            ("miner", format!("f0{}", job.miner)),
            ("start_epoch", job.start_epoch.to_string()),
            ("end_epoch", job.end_epoch.to_string()),
            ("kind", job.kind.as_str().to_owned()),
        ]
    }

    /// The template with its placeholders replaced.
    pub fn render(template: &str, values: &[(&'static str, String)]) -> String {
        let mut out = template.to_owned();
        for (name, value) in values {
            out = out.replace(&format!("{{{name}}}"), &shell_quote(value));
        }
        out
    }
}

/// The deal ID at the end of the command's last line.
pub fn deal_id(stdout: &str) -> Option<u64> {
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty())?;
    line.split_whitespace().last()?.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok()
}

impl Sealer for CommandSealer {
    fn name(&self) -> &'static str {
        "command"
    }

    async fn hand_over(&self, job: &SealJob) -> Result<u64, SealError> {
        let values = Self::values(job);
        let script = Self::render(&self.template, &values);
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.kill_on_drop(true);
        for (name, value) in &values {
            cmd.env(format!("ESTUARY_{}", name.to_uppercase()), value);
        }
        let mut child =
            cmd.spawn().map_err(|e| SealError::Retry(format!("starting the seal command: {e}")))?;
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let run = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let mut stdout = (&mut stdout).take(MAX_OUTPUT);
            let mut stderr = (&mut stderr).take(MAX_OUTPUT);
            let (a, b, status) = tokio::join!(
                stdout.read_to_end(&mut out),
                stderr.read_to_end(&mut err),
                child.wait()
            );
            a.and(b).and(status.map(|s| (s, out, err)))
        };
        let (status, out, err) = match tokio::time::timeout(self.timeout, run).await {
            Err(_) => {
                return Err(SealError::Retry(format!(
                    "the seal command did not finish within {:?} and was killed",
                    self.timeout
                )));
            }
            Ok(Err(e)) => return Err(SealError::Retry(format!("running the seal command: {e}"))),
            Ok(Ok(done)) => done,
        };
        let stdout = String::from_utf8_lossy(&out);
        if !status.success() {
            let stderr = String::from_utf8_lossy(&err);
            let tail: String = stderr.lines().rev().take(3).collect::<Vec<_>>().join(" / ");
            return Err(SealError::Retry(format!("the seal command failed ({status}): {tail}")));
        }
        deal_id(&stdout)
            .ok_or_else(|| SealError::Retry("the seal command printed no deal ID".into()))
    }

    async fn poll(
        &self,
        job: &SealJob,
        deal: u64,
        _active: bool,
    ) -> Result<SealProgress, SealError> {
        let retry = |e: crate::chain::ReadError| SealError::Retry(e.to_string());
        match job.kind {
            WorkKind::Slot => {
                let order = job
                    .order
                    .ok_or_else(|| SealError::Fail("a slot job without its order".into()))?;
                if self.chain.publish_would_succeed(job.contract, order).await {
                    return Ok(SealProgress::Active { sector: None });
                }
            }
            WorkKind::Proposal => {
                let (found, _) =
                    self.chain.proposal_deal(job.contract, job.proposal_id).await.map_err(retry)?;
                if let Some((_, activated)) = found
                    && activated >= 0
                {
                    return Ok(SealProgress::Active { sector: None });
                }
            }
        }
        // On the local chain the simulated market answers directly.
        if let Ok(d) = self.chain.market_deal(deal).await {
            if d.removed {
                return Ok(SealProgress::Gone("the market removed the deal".into()));
            }
            if d.activated >= 0 {
                return Ok(SealProgress::Active { sector: Some(d.sector) });
            }
        }
        Ok(SealProgress::Sealing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_quote_every_value() {
        let values =
            vec![("piece_path", "/data/it's here.car".to_owned()), ("miner", "f01000".to_owned())];
        assert_eq!(
            CommandSealer::render("import {piece_path} --miner {miner} {unknown}", &values),
            r"import '/data/it'\''s here.car' --miner 'f01000' {unknown}"
        );
    }

    #[test]
    fn the_deal_id_ends_the_last_line() {
        assert_eq!(deal_id("importing…\ndeal 42\n\n"), Some(42));
        assert_eq!(deal_id("17"), Some(17));
        assert_eq!(deal_id("deal id: 9."), Some(9));
        assert_eq!(deal_id("done\n"), None);
        assert_eq!(deal_id(""), None);
    }
}
