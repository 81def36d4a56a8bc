//! `weir migrate`: print Gateway API objects (a Gateway per namespace, HTTPRoutes, and
//! LoadBalancerPools where a policy needs one) for weir's Ingresses, from a file or a
//! cluster, with a `#` comment above each object for what could not be carried over.

use anyhow::Context;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use weir::api::ingress::IngressClassChoice;

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["file", "from_cluster"])))]
pub struct Args {
    /// A file of Ingresses, as `weir serve --config` takes it.
    #[arg(long, short = 'f')]
    file: Option<PathBuf>,
    /// List the Ingresses of the cluster instead.
    #[arg(long)]
    from_cluster: bool,
    /// A kubeconfig file (with --from-cluster); default: KUBECONFIG, ~/.kube/config, or the
    /// in-cluster account.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Only this namespace (with --from-cluster); default: every namespace.
    #[arg(long)]
    namespace: Option<String>,
    /// The IngressClass whose Ingresses to convert (and those without a class).
    #[arg(long, default_value = weir::api::ingress::DEFAULT_INGRESS_CLASS)]
    ingress_class: String,
    /// The Gateways' address (`spec.addresses`); default: none.
    #[arg(long)]
    gateway_address: Option<String>,
    /// The port of the Gateways' HTTP listener.
    #[arg(long, default_value_t = 80)]
    http_port: u16,
    /// The port of the Gateways' HTTPS listeners.
    #[arg(long, default_value_t = 443)]
    https_port: u16,
    /// The Gateways' gatewayClassName.
    #[arg(long, default_value = "weir")]
    gateway_class: String,
}

pub fn main(args: Args) -> anyhow::Result<()> {
    let choice = IngressClassChoice {
        name: args.ingress_class.clone(),
        unclassed: true,
    };
    let (ingresses, classes): (Vec<Arc<Ingress>>, BTreeMap<String, Arc<IngressClass>>) =
        match &args.file {
            Some(path) => {
                let store = weir::source::file::load(path)?;
                (
                    store.ingresses.values().cloned().collect(),
                    store.ingress_classes.clone(),
                )
            }
            None => super::runtime::build(Some(1))?.block_on(from_cluster(&args))?,
        };
    let ours: Vec<&Ingress> = ingresses
        .iter()
        .map(AsRef::as_ref)
        .filter(|i| choice.takes(i, &classes))
        .collect();
    let options = weir::migrate::Options {
        gateway_address: args.gateway_address.clone(),
        http_port: args.http_port,
        https_port: args.https_port,
        gateway_class: args.gateway_class.clone(),
        ..Default::default()
    };
    if ours.is_empty() {
        eprintln!(
            "no Ingress of class {} (or without a class)",
            args.ingress_class
        );
    }
    let docs = weir::migrate::migrate(ours, &options);
    print!("{}", weir::migrate::to_yaml(&docs));
    Ok(())
}

async fn from_cluster(
    args: &Args,
) -> anyhow::Result<(Vec<Arc<Ingress>>, BTreeMap<String, Arc<IngressClass>>)> {
    use kube::api::{Api, ListParams};
    let client = weir::source::kube::client(args.kubeconfig.as_deref()).await?;
    let api: Api<Ingress> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let list = api
        .list(&ListParams::default())
        .await
        .context("listing Ingresses")?;
    let classes: Api<IngressClass> = Api::all(client);
    // Without the right to read IngressClasses, class names are taken as written.
    let classes = classes
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| Some((c.metadata.name.clone()?, Arc::new(c))))
        .collect();
    Ok((list.items.into_iter().map(Arc::new).collect(), classes))
}
