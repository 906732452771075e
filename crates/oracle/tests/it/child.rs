//! The oracle processes the tests start and kill: this test binary, run again with the name of
//! [`oracle_process_entry`] and the oracle's arguments in `ESTUARY_TEST_ORACLE` (a JSON list).
//! Run as a test, without that variable, it does nothing.

/// Runs an oracle until SIGTERM, when `ESTUARY_TEST_ORACLE` holds its arguments.
#[test]
fn oracle_process_entry() {
    let Ok(args) = std::env::var(crate::support::CHILD_ARGS) else { return };
    let args: Vec<String> = serde_json::from_str(&args).expect("a JSON list of arguments");
    let config = estuary_oracle::OracleConfig::from_args(&args).unwrap_or_else(|e| e.exit());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ESTUARY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        let oracle = match estuary_oracle::Oracle::start(config).await {
            Ok(oracle) => oracle,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = sigterm.recv() => {}
        }
        oracle.stop().await;
    });
    std::process::exit(0);
}
