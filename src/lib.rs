//! weir: a Kubernetes-native ingress controller and software load balancer.
//!
//! Data flows one way: sources → store → `routing::compile` → `RoutingTable` → proxy.
#![forbid(unsafe_code)]

pub mod api;
pub mod balance;
pub mod endpoint;
pub mod routing;
pub mod store;
pub mod metrics;
pub mod source;
pub mod proxy;
pub mod admin;
pub mod app;
pub mod demo;
