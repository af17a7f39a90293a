//! The `authority` subcommand (create and show authority key files) and the
//! loading of `--authority-key` files shared by `run` and `generate`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};
use concord::chain::authority::loose_permissions;
use concord::chain::{AuthorityKey, Genesis};

#[derive(Args, Debug)]
#[command(long_about = "Create or inspect authority key files.\n\n\
    An authority key signs the blocks of one authority of a network. Create one key per \
    authority with `concord authority new --out FILE`, list their public keys in the genesis \
    (`concord genesis --authority HEX ...`), and give each producing node its file \
    (`concord run --produce --authority-key FILE`).")]
pub struct AuthorityArgs {
    #[command(subcommand)]
    pub command: AuthorityCommand,
}

#[derive(Subcommand, Debug)]
pub enum AuthorityCommand {
    /// Create a new authority key file and print its public key (64 hex digits).
    New(NewArgs),
    /// Print the public key (64 hex digits) of an authority key file.
    Show(ShowArgs),
}

#[derive(Args, Debug)]
#[command(
    long_about = "Create a new ed25519 authority key file and print its public key.\n\n\
    The file is created with mode 0600 and never overwritten: if FILE exists, nothing is \
    written and the command fails. Only the public key (64 hex digits, what `concord genesis \
    --authority` takes) goes to stdout, so `PUB=$(concord authority new --out a.key)` works. \
    The file is TOML with `public_key` and `secret_seed` (both hex); keep it secret."
)]
pub struct NewArgs {
    /// Where to write the key file (must not exist).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// An authority key file made by `concord authority new`.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

pub fn authority(args: AuthorityArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AuthorityCommand::New(a) => {
            let key = AuthorityKey::generate_to(&a.out)?;
            println!("{}", key.public());
            eprintln!(
                "wrote authority key {} (keep it secret; list the public key above in the genesis with --authority)",
                a.out.display()
            );
        }
        AuthorityCommand::Show(a) => {
            let key = load_key(&a.file)?;
            println!("{}", key.public());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads a key file; a file others can read is used, with a warning.
pub fn load_key(path: &Path) -> anyhow::Result<AuthorityKey> {
    let key = AuthorityKey::load(path)?;
    if let Some(mode) = loose_permissions(path) {
        eprintln!(
            "warning: authority key file {} is accessible by others (mode bits {mode:03o}); \
             anyone who read it can sign blocks as {}: chmod 600 it, or better, make a new key",
            path.display(),
            key.public()
        );
    }
    Ok(key)
}

/// Loads key files that must all be authorities of `genesis` (named by
/// `genesis_name` in the error).
pub fn load_authorities(
    paths: &[PathBuf],
    genesis: &Genesis,
    genesis_name: &str,
) -> anyhow::Result<Vec<AuthorityKey>> {
    let mut keys = Vec::with_capacity(paths.len());
    for path in paths {
        let key = load_key(path)?;
        if !genesis.is_authority(&key.public()) {
            bail!(
                "authority key {} ({}) is not an authority of genesis {genesis_name} ({})",
                path.display(),
                key.public(),
                genesis.hash()
            );
        }
        keys.push(key);
    }
    Ok(keys)
}
