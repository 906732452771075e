//! The processes the tests start and kill: this test binary, run again with the name of
//! [`oracle_process_entry`] and the oracle's arguments in `ESTUARY_TEST_ORACLE`, or of
//! [`sp_process_entry`] and an SP agent's in `ESTUARY_TEST_SP` (JSON lists). Run as tests,
//! without those variables, they do nothing.

use std::future::Future;

/// The arguments in `var`, if this process is a child.
fn child_args(var: &str) -> Option<Vec<String>> {
    let args = std::env::var(var).ok()?;
    Some(serde_json::from_str(&args).expect("a JSON list of arguments"))
}

/// Logs to stderr (`ESTUARY_LOG`, default `default`), starts with `start`, runs until SIGTERM
/// or Ctrl-C, stops with `stop`, and exits.
fn run_until_signalled<S, E: std::fmt::Display, G: Future<Output = ()>>(
    default: &str,
    start: impl Future<Output = Result<S, E>>,
    stop: impl FnOnce(S) -> G,
) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ESTUARY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        let running = match start.await {
            Ok(running) => running,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = sigterm.recv() => {}
        }
        stop(running).await;
    });
    std::process::exit(0);
}

/// Runs an oracle until SIGTERM, when `ESTUARY_TEST_ORACLE` holds its arguments.
#[test]
fn oracle_process_entry() {
    let Some(args) = child_args(crate::support::CHILD_ARGS) else { return };
    let config = estuary_oracle::OracleConfig::from_args(&args).unwrap_or_else(|e| e.exit());
    run_until_signalled("warn", estuary_oracle::Oracle::start(config), |o| o.stop());
}

/// Runs an SP agent until SIGTERM, when `ESTUARY_TEST_SP` holds its arguments.
#[test]
fn sp_process_entry() {
    let Some(args) = child_args(crate::support::SP_CHILD_ARGS) else { return };
    let config = estuary_sp::SpConfig::from_args(&args).unwrap_or_else(|e| e.exit());
    run_until_signalled("warn", estuary_sp::Agent::start(config), |a| a.stop());
}
