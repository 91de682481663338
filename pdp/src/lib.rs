//! The Palisade policy decision point.
//!
//! Data flow of a request: [`grpc`] receives it over mutual TLS and converts
//! the protobuf into domain types; [`oidc`] verifies the caller's token into a
//! [`engine::Principal`]; [`sessions`] keeps each open session's
//! [`engine::Scope`]; [`engine`] evaluates Cedar over the active
//! [`policy::PolicySnapshot`], which [`policy::PolicyStore`] reloads on change.
//! [`server`] assembles them; [`config`] is the file an operator writes.

#![deny(missing_docs)]

pub mod approvals;
pub mod audit;
pub mod cases;
pub mod config;
pub mod engine;
pub mod grpc;
pub mod oidc;
pub mod policy;
pub mod server;
pub mod sessions;
