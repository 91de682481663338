//! The `palisade` admin command's building blocks, also used by the demo and
//! the integration tests: development certificates and the development token
//! issuer.

#![deny(missing_docs)]

pub mod certs;
pub mod token;
