//! weir: a Kubernetes-native ingress controller and software load balancer.
//!
//! Data flows one way: sources → store → `routing::compile` → `RoutingTable` → proxy.
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used)]

pub mod admin;
pub mod affinity;
pub mod api;
pub mod app;
pub mod balance;
pub mod certificate;
pub mod controller;
pub mod demo;
pub mod endpoint;
pub mod fd_limit;
pub mod health;
pub mod load_report;
pub mod metrics;
pub mod migrate;
pub mod proxy;
pub mod routing;
pub mod source;
pub mod store;
mod sync;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
