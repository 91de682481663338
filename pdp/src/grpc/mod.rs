//! The gRPC edge: services over mutual TLS, protobuf converted to domain types
//! here and nowhere else.

mod approval;
mod audit;
pub mod convert;
mod decision;
mod peer;
mod policy;

pub use approval::{ApprovalApi, ApprovalSettings};
pub use audit::AuditApi;
pub use decision::{DecisionApi, DecisionSettings};
pub use policy::PolicyApi;
