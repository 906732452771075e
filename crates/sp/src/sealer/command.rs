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
//! | `{piece_url}` | where this agent serves the verified piece (`--public-url`, or the address its listener bound, then `/piece/{v2}`) |
//! | `{deal_number}` | a `DealClient` proposal's number (`proposalNumber`: Curio's `market_deal_id`); 0 for a slot |
//! | `{client_address}` / `{contract_address}` | the agent's account and the contract as f4 addresses (`f410f…` on mainnet, chain 314; `t410f…` elsewhere) |
//! | `{curio_id}` | the ULID a Curio deal for this proposal is named by (the same on every run) |
//! | `{proposal_id_base64}` | the proposal id's 32 bytes in base64 (the activation's notification payload) |
//! | `{accept_direct}` | `true` when the contract takes direct deals (a `DealClient` whose `DealPolicy.acceptDirect` is on, or one older than the flag), else `false` (always `false` for a slot) |
//!
//! Two values are in the environment only, signed by the agent's key when the command starts
//! (Curio accepts them for about a minute; see [`super::curio`]):
//! `ESTUARY_CURIO_AUTH_DEAL` (`POST /market/mk20/deal`) and `ESTUARY_CURIO_AUTH_STATUS`
//! (`GET /market/mk20/status/{curio_id}`).
//!
//! The last line the command prints on stdout must end with the deal ID, or with `direct` for
//! a deal made without the market (Curio's DDO deals: the sector's activation notifies the
//! `DealClient`, which records `NO_DEAL`; a `PerpetualStorage` slot cannot be one). A command
//! that exits with an error, runs past its timeout (it is killed) or prints neither is retried
//! later. Output is read up to 64 KiB. Activation is read from the chain: a slot's deal is
//! active when `PerpetualStorage.publish` would go through; a proposal's when the `DealClient`
//! recorded it (or, on the local chain, when the simulated market says so).

use std::{
    process::Stdio,
    time::{Duration, SystemTime},
};

use alloy::signers::local::PrivateKeySigner;
use base64::{Engine, engine::general_purpose::STANDARD};
use tokio::io::AsyncReadExt;
use tracing::debug;

use super::{Deal, SealError, SealJob, SealProgress, Sealer, curio};
use crate::{chain::ChainClient, domain::WorkKind};

/// Most output read from the command.
const MAX_OUTPUT: u64 = 64 * 1024;

/// Runs a command to seal.
#[derive(Debug)]
pub struct CommandSealer {
    chain: ChainClient,
    template: String,
    timeout: Duration,
    signer: PrivateKeySigner,
    mainnet: bool,
    public_url: String,
}

/// Filecoin mainnet's EVM chain id (f4 addresses there are `f410f…`).
const MAINNET: u64 = 314;

/// `s` quoted for `sh`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl CommandSealer {
    /// A sealer running `template` (see the module's docs), killed after `timeout`; `signer`
    /// is the agent's key (it signs Curio's headers), `chain_id` the chain's, and `public_url`
    /// where the agent serves its pieces.
    pub fn new(
        chain: ChainClient,
        template: String,
        timeout: Duration,
        signer: PrivateKeySigner,
        chain_id: u64,
        public_url: String,
    ) -> Self {
        Self { chain, template, timeout, signer, mainnet: chain_id == MAINNET, public_url }
    }

    /// The values the template and the environment get; `number` is a proposal's number, and
    /// `accept_direct` whether its contract takes direct deals.
    pub fn values(
        &self,
        job: &SealJob,
        number: u64,
        accept_direct: bool,
    ) -> Vec<(&'static str, String)> {
        let served = if job.piece_v2.is_empty() { &job.piece_v1 } else { &job.piece_v2 };
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
            ("piece_url", format!("{}/piece/{served}", self.public_url.trim_end_matches('/'))),
            ("deal_number", number.to_string()),
            ("client_address", curio::f4_address(self.signer.address(), self.mainnet)),
            ("contract_address", curio::f4_address(job.contract, self.mainnet)),
            ("curio_id", curio::ulid(job.proposal_id)),
            ("proposal_id_base64", STANDARD.encode(job.proposal_id)),
            ("accept_direct", accept_direct.to_string()),
        ]
    }

    /// Curio's `Authorization` headers for the command, signed now.
    fn curio_headers(&self, job: &SealJob) -> Result<[(String, String); 2], SealError> {
        let now = SystemTime::now();
        let sign = |method, path: &str| {
            curio::auth_header(&self.signer, method, path, now)
                .map_err(|e| SealError::Retry(format!("signing Curio's header: {e}")))
        };
        let status = format!("/market/mk20/status/{}", curio::ulid(job.proposal_id));
        Ok([
            ("ESTUARY_CURIO_AUTH_DEAL".to_owned(), sign("POST", "/market/mk20/deal")?),
            ("ESTUARY_CURIO_AUTH_STATUS".to_owned(), sign("GET", &status)?),
        ])
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

/// The deal at the end of the command's last line: a deal ID, or `direct` (any case).
pub fn deal_of(stdout: &str) -> Option<Deal> {
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty())?;
    let word = line.split_whitespace().last()?;
    if word.trim_matches(|c: char| !c.is_ascii_alphabetic()).eq_ignore_ascii_case("direct") {
        return Some(Deal::Direct);
    }
    word.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok().map(Deal::from_record)
}

impl Sealer for CommandSealer {
    fn name(&self) -> &'static str {
        "command"
    }

    async fn hand_over(&self, job: &SealJob) -> Result<Deal, SealError> {
        // A proposal's number, 0 when unknown: a slot, or a `DealClient` deployed before
        // `proposalNumber` (a Curio deal naming 0 is refused: `DealNotFound`); and whether its
        // contract takes direct deals. Both read at once.
        let (number, accept_direct) = match job.kind {
            WorkKind::Proposal => {
                let (number, accepts) = tokio::join!(
                    self.chain.proposal_number(job.contract, job.proposal_id),
                    self.chain.accepts_direct(job.contract),
                );
                let number = number.unwrap_or_else(|e| {
                    debug!(work = %job.work, error = %e, "no proposal number");
                    0
                });
                (number, accepts.map_err(|e| SealError::Retry(e.to_string()))?)
            }
            WorkKind::Slot => (0, false),
        };
        let values = self.values(job, number, accept_direct);
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
        cmd.envs(self.curio_headers(job)?);
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
        match deal_of(&stdout) {
            None => Err(SealError::Retry("the seal command printed no deal ID".into())),
            Some(Deal::Direct) if job.kind == WorkKind::Slot => Err(SealError::Fail(
                "the seal command made a direct deal, but a PerpetualStorage slot needs a market \
                 deal (publish checks it with the market)"
                    .into(),
            )),
            Some(deal) => Ok(deal),
        }
    }

    async fn poll(
        &self,
        job: &SealJob,
        deal: Deal,
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
                // Handed over as a direct deal, yet published on the market (Boost took the
                // proposal too): that deal is the one to follow.
                if let (Deal::Direct, Some((Deal::Market(id), _))) = (deal, found) {
                    return self.market_progress(id).await;
                }
            }
        }
        let Deal::Market(deal) = deal else { return Ok(SealProgress::Sealing) };
        self.market_progress(deal).await
    }
}

impl CommandSealer {
    /// Where a market deal is, on the local chain where the simulated market answers
    /// directly; elsewhere `Sealing` (activation is read from the contracts).
    async fn market_progress(&self, deal: u64) -> Result<SealProgress, SealError> {
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
    fn the_deal_ends_the_last_line() {
        assert_eq!(deal_of("importing…\ndeal 42\n\n"), Some(Deal::Market(42)));
        assert_eq!(deal_of("17"), Some(Deal::Market(17)));
        assert_eq!(deal_of("deal id: 9."), Some(Deal::Market(9)));
        assert_eq!(deal_of("Curio deal 01J… accepted: direct\n"), Some(Deal::Direct));
        assert_eq!(deal_of("DIRECT."), Some(Deal::Direct));
        assert_eq!(deal_of("18446744073709551615"), Some(Deal::Direct));
        assert_eq!(deal_of("direct deal 7"), Some(Deal::Market(7)));
        assert_eq!(deal_of("indirect"), None);
        assert_eq!(deal_of("done\n"), None);
        assert_eq!(deal_of(""), None);
    }
}
