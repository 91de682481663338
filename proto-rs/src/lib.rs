//! The palisade.v1 gRPC contract, generated from `proto/palisade/v1/*.proto`.
//!
//! Generated types stay at each crate's edge: the PDP and the agent convert them
//! into domain types in their own `grpc` modules.

#![allow(missing_docs, reason = "generated code")]
#![allow(clippy::all, reason = "generated code")]

/// Version 1 of the contract.
pub mod v1 {
    tonic::include_proto!("palisade.v1");
}

pub mod convert;
