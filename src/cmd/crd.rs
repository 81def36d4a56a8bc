//! `weir crd`: the LoadBalancerPool CustomResourceDefinition as YAML.

use anyhow::Context;

pub fn main() -> anyhow::Result<()> {
    print!("{}", weir::api::crd_yaml().context("rendering the CRD")?);
    Ok(())
}
