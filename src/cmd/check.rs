//! `weir check`: parse and compile a file offline, as weir would, and print the conditions of
//! each pool, GatewayClass, Gateway (and its listeners) and HTTPRoute (per parent), and what
//! each Ingress asks that weir does not do as written.

use std::path::PathBuf;
use weir::api::{Condition, ConditionType};
use weir::routing::IngressWarningReason;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The file, as `weir serve --config` takes it.
    #[arg(long, short = 'f')]
    file: PathBuf,
    #[command(flatten)]
    hosts: super::listen::HostRules,
    /// The IngressClass weir serves, as `weir serve --ingress-class`.
    #[arg(long, default_value = weir::api::ingress::DEFAULT_INGRESS_CLASS)]
    ingress_class: String,
}

/// Fails when a pool would not be accepted or its references do not resolve, and when a
/// Gateway, listener or route is not accepted, not programmed, or has unresolved references.
pub fn main(args: Args) -> anyhow::Result<()> {
    let path = &args.file;
    let store = weir::source::file::load(path)?;
    let options = weir::routing::CompileOptions {
        host_policy: args.hosts.policy()?,
        // As `weir serve` takes the file: its Ingresses without a class are weir's.
        ingress_class: weir::api::ingress::IngressClassChoice {
            name: args.ingress_class.clone(),
            unclassed: true,
        },
        ..Default::default()
    };
    let compiled = weir::routing::compile_with_options(&store, None, &options);
    let mut bad = 0;
    for (key, status) in &compiled.statuses {
        println!("{key}  hosts: {}", status.hosts.as_deref().unwrap_or("-"));
        bad += print_conditions("  ", &status.conditions);
    }
    let gateway = &compiled.gateway;
    for (name, class) in &gateway.classes {
        println!("GatewayClass {name}");
        bad += print_conditions("  ", &class.conditions);
    }
    for (key, report) in &gateway.gateways {
        let address = report.address.map_or("-".to_string(), |a| a.to_string());
        println!("Gateway {key}  address: {address}");
        bad += print_conditions("  ", &report.conditions);
        for listener in &report.listeners {
            println!(
                "  listener {}  attached routes: {}",
                listener.name, listener.attached_routes
            );
            bad += print_conditions("    ", &listener.conditions);
        }
    }
    let routes = gateway
        .http_routes
        .iter()
        .map(|r| ("HTTPRoute", r))
        .chain(gateway.grpc_routes.iter().map(|r| ("GRPCRoute", r)));
    for (kind, (key, parents)) in routes {
        println!("{kind} {key}");
        for parent in parents {
            let p = &parent.parent_ref;
            let section = p
                .section_name
                .as_deref()
                .map_or(String::new(), |s| format!(" ({s})"));
            let namespace = p.namespace.as_deref().unwrap_or(&key.namespace);
            println!("  parent {namespace}/{}{section}", p.name);
            bad += print_conditions("    ", &parent.conditions);
        }
    }
    let mut annotation_warnings = 0;
    for (key, report) in &compiled.ingresses {
        println!("Ingress {key}  hosts: {}", report.hosts.join(","));
        for w in &report.warnings {
            println!("  warning {}: {}", w.reason.as_str(), w.message);
            match w.reason {
                IngressWarningReason::Annotation(_) => annotation_warnings += 1,
                _ => bad += 1,
            }
        }
    }
    if annotation_warnings > 0 {
        println!(
            "{annotation_warnings} annotation(s) not carried out as written (the rest serves)"
        );
    }
    if compiled.statuses.is_empty() && gateway.gateways.is_empty() && compiled.ingresses.is_empty()
    {
        println!(
            "no LoadBalancerPool, Gateway or Ingress of weir's in {}",
            path.display()
        );
    }
    if bad > 0 {
        anyhow::bail!("{bad} problem(s) found");
    }
    Ok(())
}

/// Prints `conditions` one per line; returns how many are problems (a false `Accepted`,
/// `ResolvedRefs` or `Programmed`, or a true `Conflicted`).
fn print_conditions(indent: &str, conditions: &[Condition]) -> usize {
    let mut bad = 0;
    for c in conditions {
        println!(
            "{indent}{}={} {}: {}",
            c.type_, c.status, c.reason, c.message
        );
        let must_hold = c.type_ == ConditionType::Accepted.as_str()
            || c.type_ == ConditionType::ResolvedRefs.as_str()
            || c.type_ == "Programmed";
        if (must_hold && !c.is_true()) || (c.type_ == "Conflicted" && c.is_true()) {
            bad += 1;
        }
    }
    bad
}
