//! The agent processes the tests start and kill: this test binary, run again with the name of
//! [`sp_process_entry`] and the agent's arguments in `ESTUARY_TEST_SP` (a JSON list). Run as a
//! test, without that variable, it does nothing.

/// Runs an agent until SIGTERM, when `ESTUARY_TEST_SP` holds its arguments.
#[test]
fn sp_process_entry() {
    let Ok(args) = std::env::var(crate::support::CHILD_ARGS) else { return };
    let args: Vec<String> = serde_json::from_str(&args).expect("a JSON list of arguments");
    let config = estuary_sp::SpConfig::from_args(&args).unwrap_or_else(|e| e.exit());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ESTUARY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Its stderr is the test's log file, read by the tests: plain text.
        .with_ansi(false)
        .try_init();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        let agent = match estuary_sp::Agent::start(config).await {
            Ok(agent) => agent,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = sigterm.recv() => {}
        }
        agent.stop().await;
    });
    std::process::exit(0);
}
