//! `maestro serve` (the read-only HTTP API) and `maestro token
//! add|list|remove` (who may read it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;

use super::printer::sanitize;
use super::{Change, out};
use crate::api;
use crate::exit::Exit;
use crate::sot;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Where to listen (loopback by default; another address is warned about)
    #[arg(long, default_value = "127.0.0.1:8480", value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Tokens of tokens.toml: name, person, when made (never the token)
    List,
    /// A new token for a person of people.toml: printed once, its hash committed
    Add {
        /// A name for it (where it is used: `ada-laptop`, `grafana`)
        name: String,
        /// The person of people.toml it acts as
        #[arg(long)]
        person: String,
        #[command(flatten)]
        change: Change,
    },
    /// Revoke a token: the API refuses it from the next request on
    Remove {
        name: String,
        #[command(flatten)]
        change: Change,
    },
}

pub fn serve(root: &Path, db: PathBuf, args: ServeArgs) -> anyhow::Result<Exit> {
    let app = api::router(api::Config {
        sot: root.to_path_buf(),
        db,
    })
    .map_err(|e| super::fleet_cmd::InvalidInput(e.to_string()))?;
    let tokens = sot::load(root)?.api_tokens.len();
    super::telemetry_cmd::runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let local = listener.local_addr()?;
        if api::exposed(&local) {
            eprintln!(
                "warning: {local} is reachable from other machines: the API answers anyone with a token, in clear text (no TLS); put it behind a TLS proxy or listen on 127.0.0.1"
            );
        }
        if tokens == 0 {
            eprintln!(
                "warning: tokens.toml holds no token, so every request is refused: maestro token add NAME --person YOU -r WHY"
            );
        }
        // The address on stdout (a script reads it, with --listen …:0 too).
        out!("serving http://{local}/ (read-only; /openapi.json describes it)");
        let shutdown = async {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = super::telemetry_cmd::terminate() => {}
            }
        };
        api::serve(listener, app, shutdown)
            .await
            .context("serving the API")?;
        Ok(Exit::Ok)
    })
}

pub fn token(root: &Path, cmd: TokenCommand, json: bool) -> anyhow::Result<Exit> {
    match cmd {
        TokenCommand::List => {
            let sot = sot::load(root)?;
            for t in sot.api_tokens.values() {
                if json {
                    out!("{}", json!({"event": "api_token", "token": t}));
                } else {
                    out!(
                        "{:<24} {:<16} {}",
                        sanitize(t.name.as_bytes()),
                        sanitize(t.person.as_bytes()),
                        t.created.as_deref().unwrap_or("-")
                    );
                }
            }
            Ok(Exit::Ok)
        }
        TokenCommand::Add {
            name,
            person,
            change,
        } => {
            let (c, token) =
                api::token::add(root, &name, &person, &super::sot_cmd::intent(&change))?;
            if json {
                out!(
                    "{}",
                    json!({"event": "api_token_added", "name": name, "person": person,
                           "commit": c.commit, "token": token})
                );
            } else {
                out!("{token}");
                eprintln!(
                    "token `{name}` for {person}: shown once, only its SHA-256 is in {} (commit {}); send it as `Authorization: Bearer TOKEN`",
                    api::token::FILE,
                    &c.commit[..12]
                );
            }
            Ok(Exit::Ok)
        }
        TokenCommand::Remove { name, change } => {
            let c = api::token::remove(root, &name, &super::sot_cmd::intent(&change))?;
            Ok(super::sot_cmd::committed(c, json))
        }
    }
}
