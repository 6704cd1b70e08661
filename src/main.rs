//! The `bosun` command line: parses flags and hands each subcommand to its module in
//! [`cmd`]; what is shown goes through [`printer`].

mod cmd;
mod printer;
mod status;

use clap::{Parser, Subcommand};
use cmd::converge::ConvergeArgs;
use cmd::exec::ExecArgs;
use cmd::facts::FactsArgs;
use cmd::inventory::InventoryCommand;
use cmd::lab::LabCommand;
use cmd::secret::SecretCommand;
use cmd::status::StatusArgs;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "bosun",
    version,
    about = "Agentless, push-based configuration over SSH: converge hosts to what their roles declare."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Identity that decrypts encrypted secrets: an age identity file or an SSH private key
    /// (repeatable). Beats BOSUN_IDENTITY, which beats the inventory's secrets_identity.
    #[arg(long, global = true, value_name = "FILE")]
    identity: Vec<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Converge hosts to the site's roles (changes hosts unless --check).
    Converge(ConvergeArgs),
    /// Show what converge would change, with diffs. Exit 0: nothing to do, 2: changes pending, 1: errors.
    Plan(ConvergeArgs),
    /// Inspect the inventory.
    Inventory {
        #[command(subcommand)]
        command: InventoryCommand,
    },
    /// Print the facts of one host as JSON.
    Facts(FactsArgs),
    /// The database tier at a glance: Patroni members and HAProxy backends.
    Status(StatusArgs),
    /// The built-in lab of Debian 12 systemd hosts (systemd-nspawn; root, Linux).
    Lab {
        #[command(subcommand)]
        command: LabCommand,
    },
    /// Encrypted vars files (age): encrypt, decrypt, edit, rekey, keygen.
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// Run an ad-hoc shell command on matching hosts.
    Exec(ExecArgs),
}

fn main() -> ExitCode {
    // Like other Unix filters: `bosun inventory list | head` ends quietly on a closed pipe.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    bosun_model::secrets::set_cli_identities(cli.identity.clone());
    // Secrets are asked for here, on the terminal; the model never prompts by itself.
    bosun_model::secrets::set_prompter(printer::ask_secret);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return ExitCode::from(printer::error(format!("cannot start the runtime: {e}")));
        }
    };
    let code = rt.block_on(async {
        match cli.command {
            Command::Converge(a) => cmd::converge::run(a, false).await,
            Command::Plan(a) => cmd::converge::run(a, true).await,
            Command::Inventory { command } => cmd::inventory::run(command),
            Command::Facts(a) => cmd::facts::run(a).await,
            Command::Status(a) => cmd::status::run(a).await,
            Command::Lab { command } => cmd::lab::run(command).await,
            Command::Secret { command } => cmd::secret::run(command).await,
            Command::Exec(a) => cmd::exec::run(a).await,
        }
    });
    ExitCode::from(code)
}
