//! `weir check`: parse and compile a file offline, as weir would, and print each pool's
//! conditions.

use std::path::PathBuf;
use weir::api::ConditionType;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The file, as `weir serve --config` takes it.
    #[arg(long, short = 'f')]
    file: PathBuf,
    #[command(flatten)]
    hosts: super::listen::HostRules,
}

/// Fails when a pool would not be accepted or its references do not resolve.
pub fn main(args: Args) -> anyhow::Result<()> {
    let path = &args.file;
    let store = weir::source::file::load(path)?;
    let compiled = weir::routing::compile_with(&store, None, &args.hosts.policy()?);
    let mut bad = 0;
    for (key, status) in &compiled.statuses {
        println!("{key}  hosts: {}", status.hosts.as_deref().unwrap_or("-"));
        for c in &status.conditions {
            println!("  {}={} {}: {}", c.type_, c.status, c.reason, c.message);
            let blocking = c.type_ == ConditionType::Accepted.as_str()
                || c.type_ == ConditionType::ResolvedRefs.as_str();
            if !c.is_true() && blocking {
                bad += 1;
            }
        }
    }
    if compiled.statuses.is_empty() {
        println!("no LoadBalancerPool in {}", path.display());
    }
    if bad > 0 {
        anyhow::bail!("{bad} problem(s) found");
    }
    Ok(())
}
