//! `estuary oracle run --config FILE` and `estuary sp run --config FILE`: settings from a TOML
//! file.
//!
//! The file's keys are the long flag names (`rpc-url = "…"`, `workers = 8`,
//! `gateway = ["http://…", "http://…"]`; `rpc_url` works too). Precedence, highest first:
//! command-line flags, `ESTUARY_*` environment variables, the file, the embedded defaults. This
//! works by making each value in the file the flag's default before the command line is parsed,
//! so clap's own precedence does the rest and `--help` shows the file's values.

use std::{ffi::OsString, path::PathBuf};

use anyhow::{Context, Result, bail};

/// The environment variable naming the file when `--config` is not given.
pub const CONFIG_ENV: &str = "ESTUARY_CONFIG";

/// The `run` command (`oracle` or `sp`) whose settings a config file may give.
fn run_command(args: &[&str]) -> Option<&'static str> {
    if args.windows(2).any(|w| w == ["oracle", "run"]) {
        Some("oracle")
    } else if args.windows(2).any(|w| w == ["sp", "run"]) {
        Some("sp")
    } else {
        None
    }
}

/// The config file `args` (the whole command line) or the environment name for `oracle run`
/// or `sp run`.
pub fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    run_command(&args)?;
    for (i, arg) in args.iter().enumerate() {
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(path.into());
        }
        if *arg == "--config" {
            return args.get(i + 1).map(PathBuf::from);
        }
    }
    std::env::var_os(CONFIG_ENV).map(PathBuf::from)
}

fn value_text(key: &str, value: &toml::Value) -> Result<String> {
    Ok(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Array(items) => items
            .iter()
            .map(|item| match item {
                toml::Value::Array(_) | toml::Value::Table(_) => {
                    bail!("{key}: a list may hold only strings and numbers")
                }
                other => value_text(key, other),
            })
            .collect::<Result<Vec<_>>>()?
            .join(","),
        toml::Value::Table(_) | toml::Value::Datetime(_) => {
            bail!("{key}: expected a string, number, boolean or list")
        }
    })
}

/// Makes the values in `text` (TOML) the defaults of `run`'s flags.
pub fn apply(mut run: clap::Command, text: &str, origin: &str) -> Result<clap::Command> {
    // toml's own message quotes the offending line, which may hold a secret (`operator-key = …`):
    // say where and what, not the line.
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line =
            e.span().map_or(0, |span| text[..span.start.min(text.len())].lines().count().max(1));
        anyhow::anyhow!("{origin} is not valid TOML: line {line}: {}", e.message())
    })?;
    for (key, value) in &table {
        let name = key.replace('_', "-");
        let id = run
            .get_arguments()
            .find(|a| a.get_long() == Some(name.as_str()) && a.get_id() != "config")
            .map(|a| a.get_id().clone())
            .with_context(|| {
                let known: Vec<String> = run
                    .get_arguments()
                    .filter_map(|a| a.get_long().map(str::to_owned))
                    .filter(|l| l != "config" && l != "help")
                    .collect();
                format!("{origin}: unknown setting {key:?}; known: {}", known.join(", "))
            })?;
        let text = value_text(key, value).with_context(|| origin.to_owned())?;
        run = run.mut_arg(id, |a| a.default_value(text));
    }
    Ok(run)
}

/// The `estuary` command with `oracle run`'s or `sp run`'s defaults taken from its config
/// file, if any.
pub fn command_with_config(cli: clap::Command, args: &[OsString]) -> Result<clap::Command> {
    let Some(path) = config_path(args) else { return Ok(cli) };
    let words: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    let parent = run_command(&words).expect("config_path found a run command");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    let origin = path.display().to_string();
    let mut failure = None;
    let cli = cli.mut_subcommand(parent, |parent| {
        parent.mut_subcommand("run", |run| match apply(run.clone(), &text, &origin) {
            Ok(run) => run,
            Err(e) => {
                failure = Some(e);
                run
            }
        })
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(cli),
    }
}

#[cfg(test)]
mod tests {
    use clap::{Arg, ArgAction, Command};

    use super::*;

    fn run_cmd() -> Command {
        Command::new("run")
            .arg(Arg::new("config").long("config"))
            .arg(Arg::new("rpc_url").long("rpc-url").env("TEST_ESTUARY_RPC").default_value("a"))
            .arg(Arg::new("workers").long("workers").default_value("4"))
            .arg(
                Arg::new("gateways").long("gateway").value_delimiter(',').action(ArgAction::Append),
            )
    }

    #[test]
    fn file_values_become_defaults_and_flags_win() {
        let cmd = apply(
            run_cmd(),
            "rpc_url = \"http://x\"\nworkers = 8\ngateway = [\"g1\", \"g2\"]",
            "f",
        )
        .unwrap();
        let m = cmd.clone().get_matches_from(["run"]);
        assert_eq!(m.get_one::<String>("rpc_url").unwrap(), "http://x");
        assert_eq!(m.get_one::<String>("workers").unwrap(), "8");
        let g: Vec<&String> = m.get_many::<String>("gateways").unwrap().collect();
        assert_eq!(g, ["g1", "g2"]);
        let m = cmd.get_matches_from(["run", "--workers", "2"]);
        assert_eq!(m.get_one::<String>("workers").unwrap(), "2");
    }

    #[test]
    fn a_bad_line_is_named_but_not_quoted() {
        let e = apply(run_cmd(), "workers = 1\noperator-key = 0xdeadbeefsecret\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        assert!(!e.contains("deadbeef"), "the secret is shown: {e}");
    }

    #[test]
    fn bad_files_are_refused_clearly() {
        let e = apply(run_cmd(), "nope = 1", "f.toml").unwrap_err().to_string();
        assert!(e.contains("unknown setting \"nope\"") && e.contains("rpc-url"), "{e}");
        assert!(apply(run_cmd(), "workers = ", "f").is_err());
        assert!(apply(run_cmd(), "[oracle]\nworkers = 1", "f").is_err());
        assert!(apply(run_cmd(), "gateway = [[\"a\"]]", "f").is_err());
    }

    #[test]
    fn the_path_comes_from_the_run_command_line() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            config_path(&args(&["estuary", "oracle", "run", "--config", "c.toml"])),
            Some("c.toml".into())
        );
        assert_eq!(
            config_path(&args(&["estuary", "oracle", "run", "--config=d.toml"])),
            Some("d.toml".into())
        );
        assert_eq!(config_path(&args(&["estuary", "add", "--config", "x"])), None);
        assert_eq!(
            config_path(&args(&["estuary", "sp", "run", "--config", "sp.toml"])),
            Some("sp.toml".into())
        );
    }
}
